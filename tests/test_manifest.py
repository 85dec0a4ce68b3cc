import numpy as np
import pandas as pd
import pytest

from abawkit.annotations import AnnotationError, read_annotation, split_side
from abawkit.cli import main
from abawkit.manifest import ManifestError, build_manifest, load_manifest
from helpers_affwild2 import make_tree, write_labels


@pytest.fixture(params=["EXPR_Recognition_Challenge", "EXPR_Classification_Challenge"])
def tree(tmp_path, request):
    return make_tree(tmp_path / "affwild2", request.param)


def test_split_side():
    assert split_side("video59_right") == ("video59", "right")
    assert split_side("118-30-640x480") == ("118-30-640x480", "")


def test_manifest_finds_every_subject_under_both_folder_names(tree, tmp_path):
    out = tmp_path / "manifest"
    build_manifest(tree, out, progress=False)
    m = load_manifest(out)
    v = m.videos.set_index("video_id")
    assert set(v.index) == {"1-30-64x48", "video7_left", "video7_right", "video9", "video10"}
    assert v.loc["video7_left", "side"] == "left" and v.loc["video7_left", "video_name"] == "video7"
    assert v.loc["video7_left", "video_path"] == v.loc["video7_right", "video_path"] != ""
    assert v.loc["video7_right", "video_path"].endswith("batch2/video7.avi")
    assert v.loc["video9", "split"] == "Validation_Set" and v.loc["video10", "split"] == "Test_Set"
    # Counts: 22 annotated lines, 18 labeled; per class counts.
    row = v.loc["1-30-64x48"]
    assert (row["n_frames"], row["n_labeled"], row["count_Neutral"], row["count_Happiness"]) == (22, 18, 10, 8)
    assert row["container_frames"] == 20 and row["fps"] == pytest.approx(30.0)
    assert (row["width"], row["height"]) == (64, 48)
    assert "frame count mismatch: annotation lines 22 vs container 20 (+2)" in row["problems"]
    assert row["cropped_aligned_dir"].endswith("cropped_aligned/1-30-64x48")
    assert v.loc["video7_left", "cropped_dir"] == ""
    assert "missing video" in v.loc["video9", "problems"]
    assert v.loc["video10", "n_frames"] == 12 and v.loc["video10", "problems"] == ""
    # Per-frame table and labels.
    assert m.labels("video7_right").tolist() == [6] * 5 + [7] * 10
    assert m.labels("video10").tolist() == [-1] * 12
    frames = pd.read_parquet(out / "frames.parquet")
    assert list(frames.columns) == ["video_id", "frame", "label", "split"]
    assert len(frames) == 22 + 15 + 15 + 6 + 12 and frames["frame"].min() == 1
    assert m.test_order()[:2] == [("video10", 1), ("video10", 2)]
    assert (out / "summary.txt").read_text().startswith("Aff-Wild2 tree")


def test_manifest_survives_a_moved_tree(tree, tmp_path):
    out = tmp_path / "manifest"
    build_manifest(tree, out, progress=False)
    moved = tmp_path / "moved"
    tree.rename(moved)
    m = load_manifest(out, root=moved)
    assert m.row("video7_left")["video_path"].startswith(str(moved.resolve()))


def test_unreadable_video_is_a_problem_not_a_failure(tree, tmp_path):
    (tree / "batch1" / "1-30-64x48.mp4").write_bytes(b"not a video at all")
    m = build_manifest(tree, None, progress=False)
    assert "unreadable video" in m.row("1-30-64x48")["problems"]


@pytest.mark.parametrize("content, message", [
    ("", "empty annotation file"),
    ("Valence,Arousal\n0.1,0.2\n", ":1: header"),
    ("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n", "header only"),
    ("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n3.5\n", ":3: '3.5' is not an integer"),
    ("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n1\n9\n", ":4: label 9 is outside -1..7"),
])
def test_malformed_annotation_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message) as err:
        read_annotation(path)
    assert str(path) in str(err.value)


def test_manifest_command_reports_malformed_file_and_writes_nothing(tree, tmp_path, capsys):
    bad = write_labels(tree / "annotations" / "EXPR_Recognition_Challenge" / "Train_Set" / "video7_left.txt", [0, 12])
    if not bad.parent.parent.exists():
        pytest.skip("fixture uses the other folder name")
    out = tmp_path / "manifest"
    assert main(["manifest", "--affwild2", str(tree), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "video7_left.txt:3: label 12 is outside -1..7" in err and "Nothing was written" in err
    assert not out.exists()


def test_not_a_tree_and_not_a_manifest(tmp_path):
    with pytest.raises(ManifestError, match="is this the Aff-Wild2 root"):
        build_manifest(tmp_path, None)
    with pytest.raises(ManifestError, match="abawkit manifest --affwild2"):
        load_manifest(tmp_path)


def test_annotation_trailing_blank_lines_and_bom_are_accepted(tmp_path):
    p = tmp_path / "ok.txt"
    p.write_text("\ufeffNeutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n-1\n7\n\n")
    assert read_annotation(p).tolist() == [0, -1, 7]
    assert read_annotation(p).dtype == np.int64
