import numpy as np
import pandas as pd
import pytest

from avaffect.corpus.tasks import EXPR_CLASSES
from avaffect.fusion.submission import (
    EXPR_HEADER,
    VA_HEADER,
    SubmissionError,
    _fixed_text,
    _to_text,
    expected_rows,
    format_expr,
    format_va,
    image_location,
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
    from avaffect.fusion.submission import follow_rows

    table = format_va(pd.DataFrame({"video": ["v", "v", "w"], "frame": [1, 2, 1], "valence": [0.1, 0.2, 0.3],
                                    "arousal": [0.0, 0.0, 0.0]}))
    ordered = follow_rows(table, ["w/00001.jpg", "v/00002.jpg"], "sample.txt")
    assert ordered["image_location"].tolist() == ["w/00001.jpg", "v/00002.jpg"]
    assert ordered["valence"].tolist() == [0.3, 0.2]
    with pytest.raises(SubmissionError, match="v/00003.jpg") as err:
        follow_rows(table, ["v/00001.jpg", "v/00003.jpg", "x/00001.jpg"], "sample.txt")
    assert "sample.txt" in str(err.value) and "2 listed row(s)" in str(err.value)


# --- The column-wise fast paths equal the plain per-row code ----------------------------------------------

SIX_DECIMALS = "%.6f"  # what pandas' to_csv(float_format=...) applies to each value
EDGE_VALUES = [0.0, -0.0, 0.0000004, -0.0000004, 0.0000005, -0.0000005, 0.0000015, 1.0, -1.0, 0.9999995, -0.9999996,
               0.0078125, -0.0234375, 0.5, 0.1234565, 1e-300, -5e-324, 0.1, -0.7]


def reference_text(locations, columns, task):
    """The file as a plain loop writes it: VA values with SIX_DECIMALS, EXPR labels with str(int)."""
    header = VA_HEADER if task == "va" else EXPR_HEADER
    lines = [",".join([location, *(SIX_DECIMALS % v if task == "va" else str(int(v)) for v in values)])
             for location, values in zip(locations, zip(*columns, strict=True), strict=True)]
    return header + "\n" + "".join(line + "\n" for line in lines)


def to_csv_text(table, task):
    """The text _to_text wrote before its fast path: DataFrame.to_csv."""
    body = table.astype({"label": np.int64}) if task == "expr" else table
    header = VA_HEADER if task == "va" else EXPR_HEADER
    return f"{header}\n" + body.to_csv(header=False, index=False, lineterminator="\n", float_format=SIX_DECIMALS)


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_writer_equals_reference_formatting_on_random_data(tmp_path, seed):
    rng = np.random.default_rng(seed)
    counts = {"12-24-1920x1080": 1500, "video_left": 20, "vidéo_ü": 700, "big": 100_010}
    rows = expected_rows(counts)
    n = len(rows)
    values = rng.uniform(-1, 1, (n, 2)) * 10.0 ** -rng.integers(0, 8, (n, 1))  # many magnitudes
    values[:len(EDGE_VALUES) * 2].flat = EDGE_VALUES * 2
    ties = rng.integers(-128, 129, (n // 10, 2)) / 128  # k / 2**7: exact ties at six decimals
    values[-len(ties):] = ties
    frames = pd.DataFrame({"video": [v for v, k in counts.items() for _ in range(k)],
                           "frame": [f for k in counts.values() for f in range(1, k + 1)]})
    va = format_va(frames.assign(valence=values[:, 0], arousal=values[:, 1]))
    labels = rng.integers(0, len(EXPR_CLASSES), n)
    expr = format_expr(frames.assign(label=labels.astype(np.float64)))
    for task, table, columns in (("va", va, (values[:, 0], values[:, 1])), ("expr", expr, (labels,))):
        path = tmp_path / f"{task}.txt"
        write_submission(path, table, task, rows)
        expected = reference_text(rows, columns, task)
        assert path.read_bytes() == expected.encode()
        assert expected == to_csv_text(table, task)


def test_fixed_text_equals_percent_format_on_a_dense_grid():
    grid = np.arange(-2**17, 2**17 + 1) / 2**17  # every tie k / 2**7 and its neighbours in [-1, 1]
    near = np.concatenate([np.nextafter(grid, 2), np.nextafter(grid, -2)])
    decimals = np.round(np.random.default_rng(2).uniform(-1, 1, 200_000), 7)  # x.xxxxxx5 and close by
    values = np.clip(np.concatenate([grid, near, decimals, EDGE_VALUES]), -1, 1)
    assert _fixed_text(values).to_pylist() == [SIX_DECIMALS % v for v in values.tolist()]
    # Outside [-1, 1] or not finite: one at a time, NaN as to_csv writes it.
    assert _fixed_text(np.array([np.nan, np.inf, -np.inf, -3.5, 1234.56789, 0.25])).to_pylist() == [
        "", "inf", "-inf", "-3.500000", "1234.567890", "0.250000"]
    assert _fixed_text(np.array([0.1, -0.25], dtype=np.float32)).to_pylist() == [
        SIX_DECIMALS % np.float32(0.1), "-0.250000"]


@pytest.mark.parametrize("table", [
    # A location the csv writer quotes, a non-str location, an int VA column, a nullable float column.
    pd.DataFrame({"image_location": ["a,b/00001.jpg", 'q"/00001.jpg'], "valence": [0.5, -0.25],
                  "arousal": [0.0, 1.0]}),
    pd.DataFrame({"image_location": pd.Series([1, 2], dtype=object), "valence": [0.5, 0.1], "arousal": [0.0, 1.0]}),
    pd.DataFrame({"image_location": ["v/00001.jpg", "v/00002.jpg"], "valence": [0, 1], "arousal": [1, -1]}),
    pd.DataFrame({"image_location": ["v/00001.jpg", "v/00002.jpg"],
                  "valence": pd.array([0.5, 0.25], dtype="Float64"), "arousal": [0.0, 1.0]}),
    pd.DataFrame({"image_location": pd.Series(["v/00001.jpg", "v/00002.jpg"], dtype=object),
                  "valence": np.array([0.5, 0.25], dtype=np.float32), "arousal": [-0.0, 1.0]}),
])
def test_text_falls_back_to_to_csv_where_the_fast_path_cannot_match_it(table):
    assert _to_text(table, "va") == to_csv_text(table, "va")


def test_validation_of_locations_that_are_not_str_keeps_the_per_row_rules(tmp_path):
    # str(location) is what is compared with the expected rows, so 1 matches '1'.
    table = pd.DataFrame({"image_location": pd.Series([1, 2], dtype=object), "label": [0, 3]})
    validate(table, "expr", ["1", "2"])
    write_submission(tmp_path / "expr.txt", table, "expr", ["1", "2"])
    assert (tmp_path / "expr.txt").read_text() == f"{EXPR_HEADER}\n1,0\n2,3\n"
    with pytest.raises(SubmissionError, match="1 missing row"):
        validate(table.assign(image_location=["1", np.nan]), "expr", ["1", "2"])
    with pytest.raises(SubmissionError, match="out of order"):
        validate(table.assign(image_location=["2", "1"]), "expr", ["1", "2"])


def test_locations_of_non_str_videos_and_long_videos_are_those_of_image_location():
    frames = np.array([1, 99_999, 100_000, 123_456], dtype=np.int64)
    for videos in (["v", "v", "w", "w"], [3, 3, 12, 12], pd.Series(["v", "v", "w", "w"], dtype=object)):
        table = format_va(pd.DataFrame({"video": videos, "frame": frames, "valence": 0.0, "arousal": 0.0}))
        expected = [image_location(str(v), int(f)) for v, f in zip(videos, frames, strict=True)]
        assert table["image_location"].tolist() == expected
        assert table["image_location"].dtype == pd.Series(expected).dtype
    assert expected_rows({"v": 100_001})[-2:] == ["v/100000.jpg", "v/100001.jpg"]
    assert expected_rows({}) == [] and expected_rows({"a": 0, "b": 1}) == ["b/00001.jpg"]
