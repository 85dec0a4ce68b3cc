"""The semi-supervised ablation on real images that are not faces: scikit-learn's handwritten digits (load_digits,
8x8 grey images of 1797 digits), to check the method independently of the demo.

Digits 0..7 stand for the 8 classes (digit k is class k). A few labeled digits per class, a validation set of a
third of the digits, and an imbalanced unlabeled pool (the remaining digits with class shares falling from 1 to
0.1; digits 2 and 3, the "minority" of the table, are the rarest, as Disgust and Fear are in Aff-Wild2). The images
are written as 32x32 grey PNGs and go through `abawkit.semisup.train.train` exactly like face crops (a labeled
CSV, a validation CSV, an unlabeled folder). Same rows and columns as `semisup_ablation.py` (without the rows about
the face pool). The "label prior" rows debias towards the labeled digits' class shares, what the default does with
its labels: uniform here (the same number of labels per class), i.e. DebiasPL's own target.

    PYTHONPATH=lib python benchmarks/semisup_digits.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from semisup_ablation import ALIGNED, NO_OTHER, STRICT_OTHER, VARIANTS, run_ablation  # noqa: E402

#: Share of each class's remaining digits kept in the unlabeled pool (classes 2 and 3 rarest).
POOL_SHARES = (1.0, 0.7, 0.1, 0.12, 0.5, 0.35, 0.25, 0.18)
#: the ablation's rows on the aligned pool, but colour (grey digits) and Other's pseudo-labels (digit 7 here)
ROWS = [name for name, v in VARIANTS.items()
        if v[3] == ALIGNED and "colour" not in name and name not in (NO_OTHER, STRICT_OTHER)]


def write_digits(out: Path, per_class: int, seed: int = 0) -> tuple[Path, pd.DataFrame, Path, dict[str, int]]:
    """The labeled CSV, the validation table, the unlabeled folder and the known class of each unlabeled image."""
    import cv2
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    keep = d.target < 8
    images, labels = d.images[keep], d.target[keep]
    idx = np.arange(len(labels))
    rest, val_idx = train_test_split(idx, test_size=1 / 3, stratify=labels, random_state=seed)
    rng = np.random.default_rng(seed)
    lab_idx, unl_idx = [], []
    for c in range(8):
        mine = rng.permutation(rest[labels[rest] == c])
        lab_idx += mine[:per_class].tolist()
        others = mine[per_class:]
        unl_idx += others[:max(1, round(POOL_SHARES[c] * len(others)))].tolist()

    def save(i: int, folder: Path) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"digit_{i:04d}.png"
        if not path.exists():
            grey = (images[i] / 16.0 * 255).astype(np.uint8)
            cv2.imwrite(str(path), cv2.resize(grey, (32, 32), interpolation=cv2.INTER_CUBIC))
        return str(path.resolve())

    out.mkdir(parents=True, exist_ok=True)
    labeled = pd.DataFrame({"path": [save(i, out / "labeled") for i in lab_idx], "label": labels[lab_idx]})
    labeled.to_csv(out / "labeled.csv", index=False)
    val = pd.DataFrame({"path": [save(i, out / "val") for i in val_idx], "label": labels[val_idx]})
    truth = {save(i, out / "unlabeled"): int(labels[i]) for i in unl_idx}
    return out / "labeled.csv", val, out / "unlabeled", truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/out/semisup_digits")
    ap.add_argument("--per-class", type=int, default=4, help="labeled digits per class")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=ROWS, choices=list(VARIANTS), metavar="VARIANT")
    ap.add_argument("--uratio", type=int, default=2)
    ap.add_argument("--unlabeled-warmup", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    out = Path(args.out)
    labeled_csv, val, pool, truth = write_digits(out, args.per_class)
    counts = np.bincount(pd.read_csv(labeled_csv)["label"], minlength=8)
    print(f"{counts.sum()} labeled, {len(val)} validation, {len(truth)} unlabeled digits; "
          f"pool class counts {np.bincount(list(truth.values()), minlength=8).tolist()}")
    run_ablation(out, labeled_csv, val, (pool,), None, truth, args.variants, args.seeds,
                 dict(image_size=args.image_size, steps=args.steps, batch_size=args.batch_size, input_norm="none"),
                 dict(uratio=args.uratio, unlabeled_warmup=args.unlabeled_warmup), args.threads,
                 tuple(float(c) for c in counts / counts.sum()))


if __name__ == "__main__":
    main()
