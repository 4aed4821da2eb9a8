"""ABAW challenge submission files: one line per test frame, checked before anything is written.

The organisers' EXPR header names all eight classes, yet every line carries one integer label, so
an EXPR table has the columns (image_location, label) while its file header is EXPR_HEADER.

A test set has about a million frames, so the common case runs column-wise in Arrow and numpy: image
locations are built, compared with the expected rows and written as whole arrays. Each fast path gives
exactly what the plain per-row code gives (the detailed row problems, DataFrame.to_csv's text), and hands
over to that code wherever it could not guarantee so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from avaffect.core.tables import atomic_write
from avaffect.corpus.layout import NAME_ENCODING
from avaffect.corpus.tasks import EXPR_CLASSES, VA_DIMENSIONS, check_task

LOCATION = "image_location"
LABEL = "label"
VA_HEADER = f"{LOCATION}," + ",".join(VA_DIMENSIONS)
EXPR_HEADER = f"{LOCATION}," + ",".join(EXPR_CLASSES)
HEADERS = {"va": VA_HEADER, "expr": EXPR_HEADER}
TABLE_COLUMNS = {"va": (LOCATION, *VA_DIMENSIONS), "expr": (LOCATION, LABEL)}
VA_RANGE = (-1.0, 1.0)
VA_DECIMALS = 6
VA_FORMAT = f"%.{VA_DECIMALS}f"
FRAME_DIGITS = 5
IMAGE_SUFFIX = ".jpg"
SHOWN_PROBLEMS = 5  # problems named in an error message
SHOWN_ROWS = 3  # example rows named per problem
_TEXT = pa.large_string()  # the Arrow type behind pandas' str columns
_QUOTED = '[,"\r\n]'
"""Characters that make the csv writer behind DataFrame.to_csv quote a field (delimiter, quote, line ends)."""
_TIE_MARGIN = 1e-6
"""|v| * 10**VA_DECIMALS is trusted to round as VA_FORMAT rounds v unless its fraction is this close to one
half: for |v| <= 1 the product is within 1.2e-10 of the exact one, so only true or near ties are left."""


class SubmissionError(ValueError):
    """A submission the challenge server would reject; `problems` lists everything found wrong."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        more = len(problems) - SHOWN_PROBLEMS
        shown = "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        super().__init__(f"{source}: {len(problems)} problem(s): {shown}")



def image_location(video: str, frame: int) -> str:
    """The organisers' name of 1-based `frame` of `video`, e.g. 'video/00001.jpg'."""
    return f"{video}/{frame:0{FRAME_DIGITS}d}{IMAGE_SUFFIX}"


def expected_rows(frame_counts: Mapping[str, int]) -> list[str]:
    """Image locations of frames 1..n of every video, videos in the mapping's order."""
    negative = [video for video, n in frame_counts.items() if n < 0]
    if negative:
        raise ValueError(f"frame counts must be >= 0, negative for {negative}")
    # image_location(video, k) is f"{video}" + image_location("", k): each frame part is formatted once.
    frames = [image_location("", k) for k in range(1, max(frame_counts.values(), default=0) + 1)]
    return [prefix + frame for video, n in frame_counts.items() for prefix in (f"{video}",) for frame in frames[:n]]


def read_sample_rows(path: Path) -> list[str]:
    """The image_location column of an organisers' sample file (a header line, then one row per frame)."""
    lines = Path(path).read_text(encoding=NAME_ENCODING).splitlines()
    if not lines:
        raise SubmissionError(str(path), ["file is empty, expected a header line"])
    return [line.split(",", 1)[0].strip() for line in lines[1:] if line.strip()]


def _text_array(values: pd.Series | Sequence) -> pa.Array | None:
    """`values` as one Arrow string array when every value is a str (none missing), else None."""
    if not (isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype)) \
            and pd.api.types.infer_dtype(values, skipna=False) != "string":
        return None
    try:
        array = pa.array(values, type=_TEXT, from_pandas=True)
    except (pa.ArrowException, ValueError, TypeError):  # e.g. a lone surrogate, which UTF-8 cannot hold
        return None
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if array.null_count == 0 else None


def _text_series(array: pa.Array, index: pd.Index) -> pd.Series:
    """A Series of the strings in `array`, of the dtype pandas gives a list of str."""
    dtype = pd.Series([""]).dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
        return pd.Series(pd.array(array, dtype=dtype), index=index)
    return pd.Series(array.to_pylist(), index=index)


def _locations(predictions: pd.DataFrame, value_columns: tuple[str, ...]) -> pd.Series:
    """image_location of every prediction row, after checking its columns and frame numbers."""
    missing = [c for c in ("video", "frame", *value_columns) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack the columns {missing}")
    frames = predictions["frame"].to_numpy()
    if not np.issubdtype(frames.dtype, np.integer) or (frames < 1).any():
        raise ValueError("predictions: 'frame' must hold 1-based integer frame numbers")
    videos = _text_array(predictions["video"])
    if videos is None:  # a video that is not a str: image_location(str(video), frame) row by row
        return pd.Series([image_location(str(v), int(f)) for v, f in zip(predictions["video"], frames, strict=True)],
                         index=predictions.index)
    # f"{video}/{frame:05d}.jpg" column-wise: frames are >= 1, so padding with '0' on the left is :05d.
    numbers = pc.utf8_lpad(pa.array(frames).cast(_TEXT), FRAME_DIGITS, "0")
    locations = pc.binary_join_element_wise(videos, numbers, pa.scalar("/", _TEXT))
    locations = pc.binary_join_element_wise(locations, pa.scalar(IMAGE_SUFFIX, _TEXT), pa.scalar("", _TEXT))
    return _text_series(locations, predictions.index)


def format_va(predictions: pd.DataFrame) -> pd.DataFrame:
    """Submission table (image_location, valence, arousal) from columns video, frame, valence, arousal."""
    locations = _locations(predictions, VA_DIMENSIONS)
    table = predictions[list(VA_DIMENSIONS)].astype(np.float64)
    table.insert(0, LOCATION, locations)
    return table.reset_index(drop=True)


def format_expr(predictions: pd.DataFrame) -> pd.DataFrame:
    """Submission table (image_location, label) from columns video, frame and label (class 0..7)."""
    locations = _locations(predictions, (LABEL,))
    return pd.DataFrame({LOCATION: locations, LABEL: predictions[LABEL]}).reset_index(drop=True)


def _examples(items: list[str]) -> str:
    return ", ".join(repr(item) for item in items[:SHOWN_ROWS]) + (", ..." if len(items) > SHOWN_ROWS else "")


def _row_problems(locations: list[str], rows: list[str]) -> list[str]:
    """Missing, extra, duplicated and out-of-order image locations compared with `rows`."""
    got, wanted = Counter(locations), Counter(rows)
    problems = []
    missing = [row for row in rows if row not in got]
    extra = [loc for loc in dict.fromkeys(locations) if loc not in wanted]
    duplicated = [loc for loc, count in got.items() if count > 1]
    for kind, items in (("missing", missing), ("extra", extra), ("duplicated", duplicated)):
        if items:
            problems.append(f"{len(items)} {kind} row(s): {_examples(items)}")
    # Order is judged on the rows both lists share, each at its first occurrence, so that a missing
    # or extra row does not also count as a reordering.
    shared = [loc for loc in dict.fromkeys(locations) if loc in wanted]
    reference = [row for row in rows if row in got]
    if shared != reference:
        i = next(i for i, (a, b) in enumerate(zip(shared, reference, strict=True)) if a != b)
        problems.append(f"rows out of order: expected {reference[i]!r} where {shared[i]!r} is")
    return problems


def _value_problems(table: pd.DataFrame, task: str) -> list[str]:
    """Non-finite VA values or values outside VA_RANGE; EXPR labels that are not classes 0..7."""
    problems = []
    for column in TABLE_COLUMNS[task][1:]:
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=np.float64)
        bad_rows = ~np.isfinite(values)
        if bad_rows.any():
            problems.append(f"{bad_rows.sum()} non-finite or non-numeric '{column}' value(s), "
                            f"first at row {np.flatnonzero(bad_rows)[0] + 1}")
        if task == "va":
            low, high = VA_RANGE
            bad_rows = np.isfinite(values) & ((values < low) | (values > high))
            expected = f"within [{low:g}, {high:g}]"
        else:
            bad_rows = np.isfinite(values) & ((values != np.round(values)) | (values < 0)
                                              | (values >= len(EXPR_CLASSES)))
            expected = f"an integer class 0..{len(EXPR_CLASSES) - 1}"
        if bad_rows.any():
            first = np.flatnonzero(bad_rows)[0]
            problems.append(f"{bad_rows.sum()} '{column}' value(s) not {expected}, "
                            f"first {values[first]:g} at row {first + 1}")
    return problems


def _same_rows(locations: pa.Array, rows: pa.Array) -> bool:
    return len(locations) == len(rows) and (len(rows) == 0 or bool(pc.all(pc.equal(locations, rows)).as_py()))


def _checked_locations(table: pd.DataFrame, task: str, rows: list[str], source: str) -> pa.Array | None:
    """`validate`, returning the image_location column as an Arrow array when it was found equal to `rows`.

    Locations that are str and equal `rows` one by one have no row problem, so _row_problems, which builds
    the detailed list, runs only when that comparison fails or cannot be made (a location that is not a str).
    """
    check_task(task)
    if len(set(rows)) != len(rows):
        repeated = [row for row, count in Counter(rows).items() if count > 1]
        raise ValueError(f"expected rows must be unique, repeated: {_examples(repeated)}")
    problems = []
    if tuple(table.columns) != TABLE_COLUMNS[task]:
        problems.append(f"columns must be {list(TABLE_COLUMNS[task])}, got {list(table.columns)}")
    locations = None
    if LOCATION in table.columns:
        column = table[LOCATION]
        locations = _text_array(column) if isinstance(column, pd.Series) else None
        wanted = _text_array(rows) if locations is not None else None
        if locations is None or wanted is None or not _same_rows(locations, wanted):
            locations = None
            problems += _row_problems([str(loc) for loc in column], list(rows))
    problems += _value_problems(table, task)
    if problems:
        raise SubmissionError(source, problems)
    return locations


def validate(table: pd.DataFrame, task: str, rows: list[str], source: str = "submission table") -> None:
    """Raise SubmissionError, naming `source`, unless `table` is a complete, valid submission for `task`.

    The columns must be TABLE_COLUMNS[task] and image_location must equal `rows` in order.
    """
    _checked_locations(table, task, rows, source)


def _fixed_text(values: np.ndarray) -> pa.Array:
    """VA_FORMAT % v of every value, '' for NaN (as DataFrame.to_csv writes a float column), as an Arrow array.

    Values in [-1, 1], as every valid VA value is, are written from n = round(|v| * 10**VA_DECIMALS) with
    integer arithmetic: '-' where the sign bit is set (VA_FORMAT writes -0.0 and -4e-7 as '-0.000000' too),
    the digit n // 10**6, '.', then the six digits of n % 10**6. The product is correctly rounded, so it rounds
    as the exact decimal value does except where its fraction is within _TIE_MARGIN of one half; those values
    (true ties such as 0.0078125 go to the even digit) take their digits from VA_FORMAT itself. Any other
    value (NaN, inf, |v| > 1) sends the column to VA_FORMAT one value at a time.
    """
    values = np.asarray(values, dtype=np.float64)  # exact for float16 and float32 too
    magnitude = np.abs(values)
    if not (magnitude <= 1).all():
        return pa.array([VA_FORMAT % v if not np.isnan(v) else "" for v in values.tolist()], type=_TEXT)
    scale = 10**VA_DECIMALS
    scaled = magnitude * scale
    units = np.rint(scaled).astype(np.int64)
    near_tie = np.abs(scaled - np.floor(scaled) - 0.5) < _TIE_MARGIN
    units[near_tie] = [int((VA_FORMAT % m).replace(".", "")) for m in magnitude[near_tie].tolist()]
    chars = np.empty((len(values), 3 + VA_DECIMALS), dtype=np.uint8)  # sign, digit, '.', decimals
    chars[:, 0] = ord("-")
    whole, fraction = np.divmod(units, scale)
    chars[:, 1] = ord("0") + whole
    chars[:, 2] = ord(".")
    for column in range(chars.shape[1] - 1, 2, -1):
        fraction, digit = np.divmod(fraction, 10)
        chars[:, column] = ord("0") + digit
    keep = np.ones(chars.shape, dtype=bool)
    keep[:, 0] = np.signbit(values)
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=offsets[1:])
    return pa.LargeStringArray.from_buffers(len(values), pa.py_buffer(offsets), pa.py_buffer(chars[keep]))


def _fast_text(body: pd.DataFrame, task: str, locations: pa.Array | None) -> str | None:
    """The text _to_text writes, built column-wise; None where it could differ from DataFrame.to_csv's.

    It applies when the columns are TABLE_COLUMNS[task], every location is a str that the csv writer leaves
    unquoted, the VA values are numpy floats and the EXPR label is int64.
    """
    if tuple(body.columns) != TABLE_COLUMNS[task]:
        return None
    if locations is None:
        locations = _text_array(body[LOCATION])
    if locations is None or len(locations) != len(body):
        return None
    if len(body) == 0:
        return f"{HEADERS[task]}\n"
    if pc.any(pc.match_substring_regex(locations, _QUOTED)).as_py():
        return None
    fields = [locations]
    for column in TABLE_COLUMNS[task][1:]:
        dtype = body[column].dtype
        if task == "va" and isinstance(dtype, np.dtype) and dtype.kind == "f":
            fields.append(_fixed_text(body[column].to_numpy()))
        elif task == "expr" and dtype == np.int64:
            fields.append(pa.array(body[column].to_numpy(), type=pa.int64()).cast(_TEXT))  # str(int)
        else:
            return None
    lines = pc.binary_join_element_wise(*fields, pa.scalar(",", _TEXT))
    lines = pc.binary_join_element_wise(lines, pa.scalar("", _TEXT), pa.scalar("\n", _TEXT))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset:lines.offset + len(lines) + 1]
    data = np.frombuffer(lines.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return f"{HEADERS[task]}\n" + data.tobytes().decode("utf-8")


def _to_text(table: pd.DataFrame, task: str, locations: pa.Array | None = None) -> str:
    """File contents: the task's header, then one line per row, '\\n' line endings.

    The lines are DataFrame.to_csv's (VA values as VA_FORMAT), built by _fast_text wherever it can be sure of
    that; `locations` is the image_location column as an Arrow array, when the caller has it.
    """
    body = table.astype({LABEL: np.int64}) if task == "expr" else table
    text = _fast_text(body, task, locations)
    if text is None:
        lines = body.to_csv(header=False, index=False, lineterminator="\n", float_format=VA_FORMAT)
        text = f"{HEADERS[task]}\n{lines}"
    return text


def write_submission(path: Path, table: pd.DataFrame, task: str, rows: list[str]) -> None:
    """Validate `table`, then write it to `path` atomically; nothing is written when it is invalid."""
    path = Path(path)
    locations = _checked_locations(table, task, rows, source=str(path))
    text = _to_text(table, task, locations)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding=NAME_ENCODING, newline=""))


def predicted_classes(predictions: pd.DataFrame) -> np.ndarray:
    """The most probable expression of each row of a table with one probability column per EXPR class."""
    return predictions[list(EXPR_CLASSES)].to_numpy().argmax(axis=1)


def submission_table(fused: pd.DataFrame, task: str) -> pd.DataFrame:
    """Submission table from fused frame-level predictions (EXPR: the most probable class)."""
    if task == "va":
        return format_va(fused)
    return format_expr(fused[["video", "frame"]].assign(**{LABEL: predicted_classes(fused)}))


def _parse_line(line: str, task: str) -> list[str | float | int]:
    """One data line as [image_location, values...]; ValueError names what does not parse."""
    fields = line.split(",")
    if len(fields) != len(TABLE_COLUMNS[task]):
        raise ValueError(f"expected {len(TABLE_COLUMNS[task])} fields, got {len(fields)}")
    parse = float if task == "va" else int
    return [fields[0], *(parse(field) for field in fields[1:])]


def read_submission(path: Path, task: str) -> pd.DataFrame:
    """A submission file as a table with TABLE_COLUMNS[task]; SubmissionError on a wrong header or line."""
    check_task(task)
    lines = Path(path).read_text(encoding=NAME_ENCODING).splitlines()
    if not lines or lines[0] != HEADERS[task]:
        found = repr(lines[0]) if lines else "an empty file"
        raise SubmissionError(str(path), [f"first line must be {HEADERS[task]!r}, got {found}"])
    parsed, problems = [], []
    for number, line in enumerate(lines[1:], start=2):
        try:
            parsed.append(_parse_line(line, task))
        except ValueError as err:
            problems.append(f"line {number}: {err}")
    if problems:
        raise SubmissionError(str(path), problems)
    return pd.DataFrame(parsed, columns=list(TABLE_COLUMNS[task]))


def follow_rows(table: pd.DataFrame, rows: list[str], source: str) -> pd.DataFrame:
    """The submission table in the order of `rows` (the organisers' sample file).

    Every row the sample lists must have a prediction: a frame past a video's decoded end, or a video the
    pipeline did not process, is an error that names the rows, never a silently filled value.
    """
    indexed = table.set_index(LOCATION)
    unknown = [row for row in rows if row not in indexed.index]
    if unknown:
        raise SubmissionError(source, [f"{len(unknown)} listed row(s) have no prediction (unknown video or frame "
                                       f"beyond the decoded video): {_examples(unknown)}"])
    return indexed.loc[rows].reset_index()
