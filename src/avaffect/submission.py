"""ABAW challenge submission files: one line per test frame, checked before anything is written.

The organisers' EXPR header names all eight classes, yet every line carries one integer label, so
an EXPR table has the columns (image_location, label) while its file header is EXPR_HEADER.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.corpus import EXPR_CLASSES, TASKS, VA_DIMENSIONS
from avaffect.tables import atomic_write

LOCATION = "image_location"
LABEL = "label"
VA_HEADER = f"{LOCATION}," + ",".join(VA_DIMENSIONS)
EXPR_HEADER = f"{LOCATION}," + ",".join(EXPR_CLASSES)
HEADERS = {"va": VA_HEADER, "expr": EXPR_HEADER}
TABLE_COLUMNS = {"va": (LOCATION, *VA_DIMENSIONS), "expr": (LOCATION, LABEL)}
VA_RANGE = (-1.0, 1.0)
VA_FORMAT = "%.6f"
FRAME_DIGITS = 5
IMAGE_SUFFIX = ".jpg"
SHOWN_PROBLEMS = 5  # problems named in an error message
SHOWN_ROWS = 3  # example rows named per problem


class SubmissionError(ValueError):
    """A submission the challenge server would reject; `problems` lists everything found wrong."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        more = len(problems) - SHOWN_PROBLEMS
        shown = "; ".join(problems[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        super().__init__(f"{source}: {len(problems)} problem(s): {shown}")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got '{task}'")


def image_location(video: str, frame: int) -> str:
    """The organisers' name of 1-based `frame` of `video`, e.g. 'video/00001.jpg'."""
    return f"{video}/{frame:0{FRAME_DIGITS}d}{IMAGE_SUFFIX}"


def expected_rows(frame_counts: Mapping[str, int]) -> list[str]:
    """Image locations of frames 1..n of every video, videos in the mapping's order."""
    negative = [video for video, n in frame_counts.items() if n < 0]
    if negative:
        raise ValueError(f"frame counts must be >= 0, negative for {negative}")
    return [image_location(video, k) for video, n in frame_counts.items() for k in range(1, n + 1)]


def read_sample_rows(path: Path) -> list[str]:
    """The image_location column of an organisers' sample file (a header line, then one row per frame)."""
    lines = Path(path).read_text().splitlines()
    if not lines:
        raise SubmissionError(str(path), ["file is empty, expected a header line"])
    return [line.split(",", 1)[0].strip() for line in lines[1:] if line.strip()]


def _locations(predictions: pd.DataFrame, value_columns: tuple[str, ...]) -> pd.Series:
    """image_location of every prediction row, after checking its columns and frame numbers."""
    missing = [c for c in ("video", "frame", *value_columns) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack the columns {missing}")
    frames = predictions["frame"].to_numpy()
    if not np.issubdtype(frames.dtype, np.integer) or (frames < 1).any():
        raise ValueError("predictions: 'frame' must hold 1-based integer frame numbers")
    return pd.Series([image_location(str(v), int(f)) for v, f in zip(predictions["video"], frames, strict=True)],
                     index=predictions.index)


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


def validate(table: pd.DataFrame, task: str, rows: list[str], source: str = "submission table") -> None:
    """Raise SubmissionError, naming `source`, unless `table` is a complete, valid submission for `task`.

    The columns must be TABLE_COLUMNS[task] and image_location must equal `rows` in order.
    """
    _check_task(task)
    repeated = [row for row, count in Counter(rows).items() if count > 1]
    if repeated:
        raise ValueError(f"expected rows must be unique, repeated: {_examples(repeated)}")
    problems = []
    if tuple(table.columns) != TABLE_COLUMNS[task]:
        problems.append(f"columns must be {list(TABLE_COLUMNS[task])}, got {list(table.columns)}")
    if LOCATION in table.columns:
        problems += _row_problems([str(loc) for loc in table[LOCATION]], list(rows))
    problems += _value_problems(table, task)
    if problems:
        raise SubmissionError(source, problems)


def _to_text(table: pd.DataFrame, task: str) -> str:
    """File contents: the task's header, then one line per row, '\\n' line endings."""
    body = table.astype({LABEL: np.int64}) if task == "expr" else table
    lines = body.to_csv(header=False, index=False, lineterminator="\n", float_format=VA_FORMAT)
    return f"{HEADERS[task]}\n{lines}"


def write_submission(path: Path, table: pd.DataFrame, task: str, rows: list[str]) -> None:
    """Validate `table`, then write it to `path` atomically; nothing is written when it is invalid."""
    path = Path(path)
    validate(table, task, rows, source=str(path))
    text = _to_text(table, task)
    atomic_write(path, lambda tmp: tmp.write_text(text, newline=""))


def submission_table(fused: pd.DataFrame, task: str) -> pd.DataFrame:
    """Submission table from fused frame-level predictions (EXPR: the most probable class)."""
    if task == "va":
        return format_va(fused)
    labels = fused[list(EXPR_CLASSES)].to_numpy().argmax(axis=1)
    return format_expr(fused[["video", "frame"]].assign(**{LABEL: labels}))


def _parse_line(line: str, task: str) -> list[str | float | int]:
    """One data line as [image_location, values...]; ValueError names what does not parse."""
    fields = line.split(",")
    if len(fields) != len(TABLE_COLUMNS[task]):
        raise ValueError(f"expected {len(TABLE_COLUMNS[task])} fields, got {len(fields)}")
    parse = float if task == "va" else int
    return [fields[0], *(parse(field) for field in fields[1:])]


def read_submission(path: Path, task: str) -> pd.DataFrame:
    """A submission file as a table with TABLE_COLUMNS[task]; SubmissionError on a wrong header or line."""
    _check_task(task)
    lines = Path(path).read_text().splitlines()
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
