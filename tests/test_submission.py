import numpy as np
import pandas as pd
import pytest

from avaffect.corpus import EXPR_CLASSES
from avaffect.submission import (
    EXPR_HEADER,
    VA_HEADER,
    SubmissionError,
    expected_rows,
    format_expr,
    format_va,
    read_sample_rows,
    read_submission,
    validate,
    write_submission,
)

FRAME_COUNTS = {"12-24-1920x1080": 3, "video_left": 2}
ROWS = expected_rows(FRAME_COUNTS)


def va_predictions(seed=0):
    rng = np.random.default_rng(seed)
    videos = [video for video, n in FRAME_COUNTS.items() for _ in range(n)]
    frames = [k for n in FRAME_COUNTS.values() for k in range(1, n + 1)]
    values = rng.uniform(-1, 1, (len(frames), 2))
    return pd.DataFrame({"video": videos, "frame": frames, "valence": values[:, 0], "arousal": values[:, 1]})


def expr_predictions(seed=0):
    table = va_predictions(seed)[["video", "frame"]]
    return table.assign(label=np.random.default_rng(seed).integers(0, len(EXPR_CLASSES), len(table)))


def test_headers():
    assert VA_HEADER == "image_location,valence,arousal"
    assert EXPR_HEADER == "image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other"


def test_expected_rows_in_mapping_order():
    assert ROWS == ["12-24-1920x1080/00001.jpg", "12-24-1920x1080/00002.jpg", "12-24-1920x1080/00003.jpg",
                    "video_left/00001.jpg", "video_left/00002.jpg"]
    assert expected_rows({"b": 1, "a": 1}) == ["b/00001.jpg", "a/00001.jpg"]
    with pytest.raises(ValueError, match="negative"):
        expected_rows({"a": -1})


def test_read_sample_rows(tmp_path):
    sample = tmp_path / "sample.txt"
    sample.write_text(f"{EXPR_HEADER}\na/00001.jpg,0\na/00002.jpg\n\n")
    assert read_sample_rows(sample) == ["a/00001.jpg", "a/00002.jpg"]


def test_format_va_and_expr():
    table = format_va(va_predictions())
    assert list(table.columns) == ["image_location", "valence", "arousal"]
    assert table["image_location"].tolist() == ROWS
    table = format_expr(expr_predictions())
    assert list(table.columns) == ["image_location", "label"]
    assert table["image_location"].tolist() == ROWS


def test_format_errors():
    with pytest.raises(ValueError, match="lack the columns"):
        format_va(va_predictions().drop(columns="arousal"))
    with pytest.raises(ValueError, match="frame"):
        format_expr(expr_predictions().assign(frame=0))


@pytest.mark.parametrize("task", ["va", "expr"])
def test_round_trip(tmp_path, task):
    table = format_va(va_predictions()) if task == "va" else format_expr(expr_predictions())
    path = tmp_path / f"{task}.txt"
    write_submission(path, table, task, ROWS)
    back = read_submission(path, task)
    assert list(back.columns) == list(table.columns)
    assert back["image_location"].tolist() == ROWS
    if task == "va":
        np.testing.assert_allclose(back[["valence", "arousal"]], table[["valence", "arousal"]], atol=5e-7)
    else:
        assert back["label"].tolist() == table["label"].tolist()
    validate(back, task, ROWS)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_exact_va_text(tmp_path):
    table = pd.DataFrame({"image_location": ["v/00001.jpg", "v/00002.jpg"], "valence": [0.5, -1.0],
                          "arousal": [0.1234567, 0.0]})
    path = tmp_path / "va.txt"
    write_submission(path, table, "va", ["v/00001.jpg", "v/00002.jpg"])
    assert path.read_bytes() == (b"image_location,valence,arousal\n"
                                 b"v/00001.jpg,0.500000,0.123457\n"
                                 b"v/00002.jpg,-1.000000,0.000000\n")


def test_exact_expr_text(tmp_path):
    table = pd.DataFrame({"image_location": ["v/00001.jpg", "v/00002.jpg"], "label": [7.0, 0.0]})
    path = tmp_path / "expr.txt"
    write_submission(path, table, "expr", ["v/00001.jpg", "v/00002.jpg"])
    assert path.read_bytes() == (b"image_location,Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"
                                 b"v/00001.jpg,7\n"
                                 b"v/00002.jpg,0\n")


def broken(task, change):
    table = format_va(va_predictions()) if task == "va" else format_expr(expr_predictions())
    return change(table)


def set_value(column, value, row=1):
    def change(table):
        table[column] = table[column].astype(np.float64)
        table.loc[row, column] = value
        return table
    return change


CASES = [
    ("va", lambda t: t.rename(columns={"valence": "Valence"}), "columns must be"),
    ("va", lambda t: t[["image_location", "arousal", "valence"]], "columns must be"),
    ("expr", lambda t: t.rename(columns={"label": "Neutral"}), "columns must be"),
    ("va", lambda t: t.drop(index=2).reset_index(drop=True), "1 missing row.*00003"),
    ("expr", lambda t: pd.concat([t, t.iloc[[0]].assign(image_location="x/00001.jpg")], ignore_index=True),
     "1 extra row.*x/00001"),
    ("va", lambda t: pd.concat([t, t.iloc[[0]]], ignore_index=True), "1 duplicated row"),
    ("expr", lambda t: t.iloc[[1, 0, 2, 3, 4]].reset_index(drop=True), "out of order"),
    ("va", set_value("valence", np.nan), "non-finite"),
    ("va", set_value("arousal", np.inf), "non-finite"),
    ("va", set_value("arousal", 1.0001), "within"),
    ("va", set_value("valence", -1.5), "within"),
    ("expr", set_value("label", 8), "integer class"),
    ("expr", set_value("label", -1), "integer class"),
    ("expr", set_value("label", 2.5), "integer class"),
    ("expr", set_value("label", np.nan), "non-finite"),
]


@pytest.mark.parametrize(("task", "change", "message"), CASES)
def test_invalid_tables_raise_and_write_nothing(tmp_path, task, change, message):
    table = broken(task, change)
    with pytest.raises(SubmissionError, match=message):
        validate(table, task, ROWS)
    path = tmp_path / "out.txt"
    with pytest.raises(SubmissionError, match="out.txt"):
        write_submission(path, table, task, ROWS)
    assert list(tmp_path.iterdir()) == []


def test_failed_validation_keeps_an_existing_file(tmp_path):
    path = tmp_path / "va.txt"
    good = format_va(va_predictions())
    write_submission(path, good, "va", ROWS)
    before = path.read_bytes()
    with pytest.raises(SubmissionError):
        write_submission(path, set_value("valence", 2.0)(good.copy()), "va", ROWS)
    assert path.read_bytes() == before


def test_error_lists_every_problem():
    table = format_va(va_predictions()).drop(index=0).reset_index(drop=True)
    table.loc[1, "valence"] = 3.0
    table.loc[2, "arousal"] = np.nan
    with pytest.raises(SubmissionError) as caught:
        validate(table, "va", ROWS, source="mine.txt")
    assert len(caught.value.problems) == 3
    assert str(caught.value).startswith("mine.txt: 3 problem(s): 1 missing row(s): '12-24-1920x1080/00001.jpg'")


def test_validate_rejects_unknown_task_and_repeated_expected_rows():
    with pytest.raises(ValueError, match="task"):
        validate(format_va(va_predictions()), "au", ROWS)
    with pytest.raises(ValueError, match="unique"):
        validate(format_va(va_predictions()), "va", ROWS + ROWS[:1])


def test_read_submission_rejects_wrong_header_and_lines(tmp_path):
    path = tmp_path / "va.txt"
    path.write_text("image_location,arousal,valence\nv/00001.jpg,0.1,0.2\n")
    with pytest.raises(SubmissionError, match="first line must be"):
        read_submission(path, "va")
    path.write_text(f"{EXPR_HEADER}\nv/00001.jpg,1\nv/00002.jpg,1,2\nv/00003.jpg,x\n")
    with pytest.raises(SubmissionError, match="line 3.*line 4") as caught:
        read_submission(path, "expr")
    assert len(caught.value.problems) == 2


def test_follow_rows_takes_the_sample_order_and_refuses_unpredictable_frames():
    from avaffect.submission import follow_rows

    table = format_va(pd.DataFrame({"video": ["v", "v", "w"], "frame": [1, 2, 1], "valence": [0.1, 0.2, 0.3],
                                    "arousal": [0.0, 0.0, 0.0]}))
    ordered = follow_rows(table, ["w/00001.jpg", "v/00002.jpg"], "sample.txt")
    assert ordered["image_location"].tolist() == ["w/00001.jpg", "v/00002.jpg"]
    assert ordered["valence"].tolist() == [0.3, 0.2]
    with pytest.raises(SubmissionError, match="v/00003.jpg") as err:
        follow_rows(table, ["v/00001.jpg", "v/00003.jpg", "x/00001.jpg"], "sample.txt")
    assert "sample.txt" in str(err.value) and "2 listed row(s)" in str(err.value)
