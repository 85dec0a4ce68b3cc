import zipfile

import numpy as np
import pytest

from abawkit.cli import main
from abawkit.submission import (SUBMISSION_HEADER, SubmissionError, check_submission, fill_nearest,
                                read_submission, rows_from_counts, score_submission, write_submission)

ROWS = rows_from_counts(["video59_left", "2-30-640x360"], {"video59_left": 4, "2-30-640x360": 3})


def _write(tmp_path, lines):
    p = tmp_path / "sub.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def test_round_trip_writer_then_checker(tmp_path):
    preds = {"video59_left": np.array([0, 4, 4, 7]), "2-30-640x360": np.array([1, 2, 3])}
    txt, zpath = write_submission(preds, ROWS, tmp_path / "submissions" / "run1", name="expr")
    lines = txt.read_text().splitlines()
    assert lines[0] == SUBMISSION_HEADER == "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"
    assert lines[1] == "video59_left/00001.jpg,0" and lines[-1] == "2-30-640x360/00003.jpg,3"
    assert check_submission(txt, ROWS) == []
    with zipfile.ZipFile(zpath) as zf:
        assert zf.namelist() == ["expr.txt"] and zf.read("expr.txt").decode() == txt.read_text()
    assert read_submission(txt)[("video59_left", 2)] == 4


def test_missing_prediction_is_an_error_unless_filled(tmp_path):
    preds = {"video59_left": np.array([-1, 4, -1, 6]), "2-30-640x360": np.array([1, -1, -1])}
    with pytest.raises(SubmissionError, match="4 rows have no prediction"):
        write_submission(preds, ROWS, tmp_path, fill="none")
    txt, _ = write_submission(preds, ROWS, tmp_path, fill="nearest")
    labels = [int(line.split(",")[1]) for line in txt.read_text().splitlines()[1:]]
    assert labels == [4, 4, 4, 6, 1, 1, 1]
    with pytest.raises(SubmissionError, match="no predictions at all for video '2-30-640x360'"):
        write_submission({"video59_left": np.zeros(4, int)}, ROWS, tmp_path)


def test_fill_nearest_prefers_the_earlier_frame_on_ties():
    assert fill_nearest(np.array([-1, 2, -1, 5, -1, -1])).tolist() == [2, 2, 2, 5, 5, 5]


@pytest.mark.parametrize("lines, kind, line_no", [
    (["image_location,Neutral", "video59_left/00001.jpg,0"], "header", 1),
    ([SUBMISSION_HEADER, "video59_left/00001.jpg,0,1"], "columns", 2),
    ([SUBMISSION_HEADER, "video59_left/1.jpg,0"], "location", 2),
    ([SUBMISSION_HEADER, "video59_left/00001.jpg,8"], "label", 2),
    ([SUBMISSION_HEADER, "video59_left/00001.jpg,-1"], "label", 2),
    ([SUBMISSION_HEADER, "video59_left/00001.jpg, 3"], "label", 2),
    ([SUBMISSION_HEADER, "video59_left/00001.jpg,0", "video59_left/00001.jpg,0"], "duplicate", 3),
    ([SUBMISSION_HEADER, "video59_left/00009.jpg,0"], "extra", 2),
    ([SUBMISSION_HEADER, "video59_left/00002.jpg,0", "video59_left/00001.jpg,0"], "order", 3),
    ([SUBMISSION_HEADER, "video59_left/00001.jpg,0"], "missing", 0),
])
def test_checker_rejects_each_problem_with_its_line(tmp_path, lines, kind, line_no):
    problems = check_submission(_write(tmp_path, lines), ROWS)
    hits = [p for p in problems if p.kind == kind]
    assert hits, problems
    assert hits[0].line == line_no


def test_check_submission_command(tmp_path, capsys):
    example = tmp_path / "example.txt"
    example.write_text(SUBMISSION_HEADER + "\n" + "".join(f"{v}/{k:05d}.jpg,0\n" for v, k in ROWS))
    good = _write(tmp_path, [SUBMISSION_HEADER] + [f"{v}/{k:05d}.jpg,3" for v, k in ROWS])
    assert main(["check-submission", str(good), "--example", str(example)]) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text(SUBMISSION_HEADER + "\nvideo59_left/00001.jpg,9\n")
    assert main(["check-submission", str(bad), "--example", str(example)]) == 1
    out = capsys.readouterr().out
    assert "line 2: label" in out and "missing" in out and "INVALID" in out


def test_score_submission_matches_the_metric(tmp_path):
    truth = {"video59_left": np.array([0, 4, -1, 4])}
    sub = _write(tmp_path, [SUBMISSION_HEADER, "video59_left/00001.jpg,0", "video59_left/00002.jpg,4",
                            "video59_left/00003.jpg,1", "video59_left/00004.jpg,0", "other/00001.jpg,2"])
    rep = score_submission(sub, truth)
    assert rep.n_frames == 3
    assert rep.macro_f1 == pytest.approx((2 / 3 + 2 / 3) / 8)
    with pytest.raises(SubmissionError, match="1 annotated frames have no row"):
        score_submission(sub, {"video59_left": np.array([0, 4, -1, 4, 5])})
