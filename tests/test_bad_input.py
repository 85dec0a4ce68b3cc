"""Bad input, as users meet it (a copy cut short by a full disk, a file of another tool, a zip where text was
expected): every command exits non-zero with one line naming the file, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from abawkit.cli import main
from abawkit.frame_model import FrameModelConfig, build_frame_model
from abawkit.readers import BadFileError, load_npz, read_text, read_yaml_mapping

from helpers_affwild2 import make_tree

RANDOM = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))
EXAMPLE = "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n" + "v/00001.jpg,0\n"


def truncated(path: Path) -> Path:
    """The first half of a file, as a copy interrupted by a full disk leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, dst)
    return dst


# Each case: (name, build(world, tmp) -> (argv, the bad file)). The bad file is made inside tmp.
def random_checkpoint(w, tmp):
    bad = tmp / "random.pt"
    bad.write_bytes(RANDOM)
    return ["extract-features", "--checkpoint", str(bad), "--crops", str(w["crops"]), "--manifest", str(w["manifest"]),
            "--out", str(tmp / "f")], bad


def temporal_as_frame_checkpoint(w, tmp):
    bad = _copy(w["temporal"] / "best.pt", tmp / "temporal.pt")
    return ["extract-features", "--checkpoint", str(bad), "--crops", str(w["crops"]), "--manifest", str(w["manifest"]),
            "--out", str(tmp / "f")], bad


def timm_weights_as_checkpoint(w, tmp):
    bad = tmp / "resnet10t.pth"
    torch.save(build_frame_model(FrameModelConfig(image_size=32)).backbone.state_dict(), bad)
    return ["extract-features", "--checkpoint", str(bad), "--crops", str(w["crops"]), "--manifest", str(w["manifest"]),
            "--out", str(tmp / "f")], bad


def truncated_checkpoint(w, tmp):
    bad = truncated(_copy(w["frame"], tmp / "best.pt"))
    return ["extract-features", "--checkpoint", str(bad), "--crops", str(w["crops"]), "--manifest", str(w["manifest"]),
            "--out", str(tmp / "f")], bad


def zero_byte_crop(w, tmp):
    crops = _copy(w["crops"], tmp / "crops")
    bad = next(crops.glob("*/00001.jpg"))
    bad.write_bytes(b"")
    return ["extract-features", "--checkpoint", str(w["frame"]), "--crops", str(crops), "--manifest",
            str(w["manifest"]), "--out", str(tmp / "f"), "--workers", "0"], bad


def random_weights(w, tmp):
    bad = tmp / "weights.pth"
    bad.write_bytes(RANDOM)
    return ["train-frame", "--algorithm", "supervised", "--labeled-csv", str(w["csv"]), "--weights", str(bad),
            "--image-size", "32", "--steps", "1", "--out", str(tmp / "o")], bad


def temporal_checkpoint_as_weights(w, tmp):  # a frame checkpoint is welcome (a second stage starts from it)
    bad = _copy(w["temporal"] / "best.pt", tmp / "best.pt")
    return ["train-frame", "--algorithm", "supervised", "--labeled-csv", str(w["csv"]), "--weights", str(bad),
            "--image-size", "32", "--steps", "1", "--out", str(tmp / "o")], bad


def binary_labeled_csv(w, tmp):
    bad = tmp / "labeled.csv"
    bad.write_bytes(RANDOM)
    return ["train-frame", "--algorithm", "supervised", "--labeled-csv", str(bad), "--image-size", "32",
            "--steps", "1", "--out", str(tmp / "o")], bad


def zip_as_labeled_csv(w, tmp):
    import zipfile

    bad = tmp / "labeled.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.write(w["csv"], "labeled.csv")
    return ["train-frame", "--algorithm", "supervised", "--labeled-csv", str(bad), "--image-size", "32",
            "--steps", "1", "--out", str(tmp / "o")], bad


def truncated_features_train(w, tmp):
    features = _copy(w["features"], tmp / "features")
    bad = truncated(next(features.glob("*.npz")))
    return ["train-temporal", "--features", str(features), "--manifest", str(w["manifest"]), "--out",
            str(tmp / "t"), "--epochs", "1"], bad


def truncated_features_predict(w, tmp):
    features = _copy(w["features"], tmp / "features")
    bad = truncated(sorted(features.glob("*.npz"))[-1])
    return ["predict", "--temporal", str(w["temporal"]), "--features", str(features), "--manifest",
            str(w["manifest"]), "--out", str(tmp / "p"), "--no-postprocess"], bad


def frame_checkpoint_to_predict(w, tmp):
    temporal = tmp / "temporal"
    temporal.mkdir()
    bad = _copy(w["frame"], temporal / "best.pt")
    return ["predict", "--temporal", str(temporal), "--features", str(w["features"]), "--manifest",
            str(w["manifest"]), "--out", str(tmp / "p"), "--no-postprocess"], bad


def binary_submission_check(w, tmp):
    example, bad = tmp / "example.txt", tmp / "submission.txt"
    example.write_text(EXAMPLE)
    bad.write_bytes(RANDOM)
    return ["check-submission", str(bad), "--example", str(example)], bad


def binary_submission_evaluate(w, tmp):
    bad = tmp / "predictions.txt"
    bad.write_bytes(RANDOM)
    truth = tmp / "truth"
    truth.mkdir()
    (truth / "v.txt").write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n")
    return ["evaluate", str(bad), "--truth", str(truth)], bad


def binary_annotation(w, tmp):
    tree = make_tree(tmp / "affwild2")
    bad = tree / "annotations" / "EXPR_Recognition_Challenge" / "Train_Set" / "video7_left.txt"
    bad.write_bytes(b"Neutral,Anger\n" + RANDOM)
    return ["manifest", "--affwild2", str(tree), "--out", str(tmp / "m")], bad


def binary_videos_table(w, tmp):
    manifest = _copy(w["manifest"], tmp / "manifest")
    bad = manifest / "videos.csv"
    bad.write_bytes(RANDOM)
    return ["train-temporal", "--features", str(w["features"]), "--manifest", str(manifest), "--out", str(tmp / "t")], bad


def pipeline_not_a_mapping(w, tmp):
    bad = tmp / "pipeline.yaml"
    bad.write_text("- stage: manifest\n- stage: faces\n")
    return ["run", str(bad), "--run-dir", str(tmp / "run"), "--dry-run"], bad


def config_not_a_mapping(w, tmp):
    bad = tmp / "settings.yaml"
    bad.write_text("[1, 2, 3]\n")
    return ["train-temporal", "--config", str(bad), "--features", str(w["features"])], bad


CASES = [random_checkpoint, temporal_as_frame_checkpoint, timm_weights_as_checkpoint, truncated_checkpoint,
         zero_byte_crop, random_weights, temporal_checkpoint_as_weights, binary_labeled_csv, zip_as_labeled_csv,
         truncated_features_train, truncated_features_predict, frame_checkpoint_to_predict, binary_submission_check,
         binary_submission_evaluate, binary_annotation, binary_videos_table, pipeline_not_a_mapping,
         config_not_a_mapping]
#: What each case's message must say besides the file's name.
SAYS = {"random_checkpoint": "not a readable PyTorch file", "temporal_as_frame_checkpoint": "is an abawkit temporal",
        "timm_weights_as_checkpoint": "plain model weights", "truncated_checkpoint": "truncated",
        "zero_byte_crop": "empty (0 bytes)", "random_weights": "not a readable PyTorch file",
        "temporal_checkpoint_as_weights": "is an abawkit temporal checkpoint", "binary_labeled_csv": "not text",
        "zip_as_labeled_csv": "a zip archive", "truncated_features_train": "truncated or not an .npz",
        "truncated_features_predict": "truncated or not an .npz", "frame_checkpoint_to_predict":
        "is an abawkit frame-model checkpoint", "binary_submission_check": "not text",
        "binary_submission_evaluate": "not text", "binary_annotation": "not text",
        "binary_videos_table": "not text", "pipeline_not_a_mapping": "not a mapping",
        "config_not_a_mapping": "not a mapping"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bad_file_is_one_line_naming_it(case, world, tmp_path, capsys):
    argv, bad = case(world, tmp_path)
    before = bad.read_bytes()
    rc = main(argv)  # an exception escaping here is the traceback a user would have seen
    err = capsys.readouterr().err
    assert rc != 0
    assert str(bad) in err and SAYS[case.__name__] in err, err
    assert "Traceback" not in err
    assert bad.read_bytes() == before  # the bad input itself is left as it was


def test_console_script_prints_no_traceback(world, tmp_path):
    """The installed ``abawkit`` entry point, not only ``main``: exit code 2, the error one line (after the
    progress bar)."""
    argv, bad = truncated_features_predict(world, tmp_path)
    exe = Path(sys.executable).with_name("abawkit")
    proc = subprocess.run([str(exe), *argv], capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and str(bad) in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"abawkit predict: error: {bad}: is truncated"), proc.stderr


def test_worker_error_keeps_only_the_original_message(world, tmp_path, capsys):
    """A bad crop read in a DataLoader worker process reaches the user as the reader's message, not the
    worker's traceback that torch re-raises it with."""
    argv, bad = zero_byte_crop(world, tmp_path)
    rc = main([*argv[:-2], "--workers", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and f"{bad}: is empty (0 bytes)" in err, err


def test_readers_name_the_problem(tmp_path):
    text = tmp_path / "a.txt"
    text.write_bytes("é\n".encode("latin-1"))
    with pytest.raises(BadFileError, match=r"a.txt: is not UTF-8 text \(byte 0, line 1\)"):
        read_text(text, "text")
    yml = tmp_path / "a.yaml"
    yml.write_text("a: [1,\n")
    with pytest.raises(BadFileError, match="not valid YAML at line"):
        read_yaml_mapping(yml, "a mapping")
    npy = tmp_path / "a.npz"
    np.save(open(npy, "wb"), np.zeros(3))
    with pytest.raises(BadFileError, match="single .npy array"):
        load_npz(npy, "features")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml_mapping(empty, "a mapping", allow_empty=True) == {}
    with pytest.raises(BadFileError, match="not found"):
        read_text(tmp_path / "nope.txt", "text")



def test_the_same_commands_run_on_good_files(world, tmp_path):
    """The control of the table: with the bad file replaced by a good one, each command succeeds, so the cases
    above fail because of their file alone."""
    w = world
    assert main(["extract-features", "--checkpoint", str(w["frame"]), "--crops", str(w["crops"]), "--manifest",
                 str(w["manifest"]), "--out", str(tmp_path / "f"), "--workers", "0"]) == 0
    assert main(["train-frame", "--algorithm", "supervised", "--labeled-csv", str(w["csv"]), "--image-size", "32",
                 "--steps", "1", "--batch-size", "2", "--workers", "0", "--out", str(tmp_path / "o")]) == 0
    assert main(["train-temporal", "--features", str(w["features"]), "--manifest", str(w["manifest"]), "--out",
                 str(tmp_path / "t"), "--epochs", "1"]) == 0
    assert main(["predict", "--temporal", str(w["temporal"]), "--features", str(w["features"]), "--manifest",
                 str(w["manifest"]), "--out", str(tmp_path / "p"), "--no-postprocess"]) == 0


def test_video_that_stops_decoding_halfway_is_named_and_keeps_what_decoded(tmp_path, capsys):
    """An AVI cut in the middle of its frames (a copy interrupted): either the frames that decode are kept and the
    summary says where decoding stopped, or (when the decoder cannot start on what is left) the video fails with
    its path named; never a traceback. (decord's outcome on the cut file has varied from run to run.)"""
    import pandas as pd

    from helpers_affwild2 import write_video

    video = write_video(tmp_path / "cut.avi", 60, size=(96, 96))
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    out = tmp_path / "faces"
    rc = main(["extract-faces", "--video", str(video), "--out", str(out), "--quiet"])
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err
    row = pd.read_csv(out / "summary.csv", keep_default_na=False).set_index("video_id").loc["cut"]
    if row["status"] == "done":
        assert rc == 0 and 0 < row["frames_decoded"] < 60
        assert "decod" in row["problems"] or "container says 60 frames" in row["problems"], row["problems"]
    else:
        assert rc == 1 and "FAILED cut: " in printed.out and str(video) in row["problems"], (printed.out, row)
