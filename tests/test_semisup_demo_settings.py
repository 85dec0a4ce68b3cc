"""Options added for the demo scale: the supervised warm-up of the semi-supervised algorithms
(SemiSupConfig.unlabeled_warmup: no pseudo-label loss and no threshold / debiasing state change before it ends,
the feedback teacher still learns, the loop's global step decides it) and the training videos left out for stage
05 (the manifest's holdout column)."""

from __future__ import annotations


import pytest
import torch
from torch import nn

from abawkit.semisup.algorithms import build_algorithm
from abawkit.semisup.config import preset
from helpers_algorithms import tiny_batch, tiny_context


@pytest.mark.parametrize("algorithm", ["fixmatch", "full"])
def test_warmup_steps_are_supervised_then_the_unlabeled_parts_start(algorithm):
    # no floor: a tiny untrained model is never 0.95 sure, and the test needs pseudo-labels to pass once it starts
    cfg = preset(algorithm, unlabeled_warmup=2, threshold="self-adaptive", debias=True, threshold_floor=0.0)
    ctx = tiny_context()
    algo = build_algorithm(cfg, ctx, 8, 16)
    state0 = algo.labeler.state_dict()
    teacher0 = [p.detach().clone() for p in getattr(algo, "teacher_module", nn.Linear(1, 1)).parameters()]
    for k in range(2):
        stats = algo.train_step(*tiny_batch(k), step=k)
        assert stats["loss_u"] == 0.0 and stats["mask_rate"] == 0.0
    after = algo.labeler.state_dict()
    assert torch.equal(after["threshold"]["tau"], state0["threshold"]["tau"])
    assert torch.equal(after["debias"]["p_hat"], state0["debias"]["p_hat"])
    if algorithm == "full":  # the feedback teacher learned from the labeled batches meanwhile
        moved = [not torch.equal(a, b) for a, b in zip(teacher0, algo.teacher_module.parameters())]
        assert any(moved)
    stats = algo.train_step(*tiny_batch(2), step=2)
    assert stats["mask_rate"] > 0.0
    assert not torch.equal(algo.labeler.state_dict()["debias"]["p_hat"], state0["debias"]["p_hat"])


def test_negative_warmup_is_an_error():
    with pytest.raises(ValueError, match="unlabeled_warmup"):
        preset("full", unlabeled_warmup=-1)


def test_the_frame_model_leaves_out_the_manifests_held_out_videos(tiny_demo, tiny_manifest, tmp_path):
    """The frame model must not see the subjects whose frames fit the post-processing (stage 06): otherwise the
    window and biases are tuned on memorised frames (on the demo: post-processing 0.63 < frame model 0.81)."""
    from helpers_semisup import truth_crops

    from abawkit.manifest import build_manifest
    from abawkit.semisup.config import TrainConfig
    from abawkit.semisup.train import load_tables

    held_manifest = build_manifest(tiny_demo, tmp_path / "manifest", progress=False, holdout_fraction=0.5, seed=3)
    crops = truth_crops(tiny_demo, tiny_manifest, tmp_path / "faces", size=32, splits=("Train_Set",))
    kw = dict(crops_dir=str(crops), val_split="", semisup=preset("supervised"))
    everything = set(load_tables(TrainConfig(manifest_dir=str(tiny_manifest.path), **kw))[0]["video_id"])
    kept = set(load_tables(TrainConfig(manifest_dir=str(held_manifest.path), **kw))[0]["video_id"])
    held = set(held_manifest.video_ids("Train_Set", holdout=True))
    assert held and kept == everything - held and not tiny_manifest.video_ids(holdout=True)


def test_cli_options_reach_the_config():
    from abawkit.config import cli
    from abawkit.semisup.config import TrainConfig

    cfg = cli(TrainConfig, "--input-norm per-image --unlabeled-warmup 5 --manifest m --crops c --out o".split(),
              prog="train-frame")
    assert (cfg.input_norm, cfg.semisup.unlabeled_warmup) == ("per-image", 5)
    assert (cfg.manifest_dir, cfg.crops_dir, cfg.out_dir) == ("m", "c", "o")
