"""A simulated Aff-Wild2-size corpus for dry runs: the real corpus's layout and sample list, placeholder media.

The scale profile (`split,n_frames,fps,two_person_half`, one row per VA-challenge sample) gives the corpus's
shape without its data. Two-person samples read one video: consecutive `two_person_half` rows of the same
split, length and frame rate become `<video>_left` and `<video>_right`. Every video file and annotation file
is an empty placeholder, so `snakemake -n` builds the workflow's full DAG for the corpus, and nothing can
run on it: a video decoder stops at the first placeholder with an error naming it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from avaffect.corpus.layout import SPLIT_DIRS, annotation_path, challenge_test_list, video_of
from avaffect.corpus.tasks import TASKS

SPLIT_OF_DIR = {folder: split for split, folder in SPLIT_DIRS.items()}
PLACEHOLDER_SUFFIX = ".mp4"


@dataclass(frozen=True)
class ProfileRow:
    split: str  # train | validation | test
    n_frames: int
    fps: float
    two_person_half: bool


def read_scale_profile(path: Path) -> list[ProfileRow]:
    """Rows of the scale profile; an unknown split or a bad number is an error naming the file and line."""
    path = Path(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        expected = {"split", "n_frames", "fps", "two_person_half"}
        if set(reader.fieldnames or ()) != expected:
            raise ValueError(f"{path}: columns must be {sorted(expected)}, found {reader.fieldnames}")
        rows = []
        for line, record in enumerate(reader, start=2):
            try:
                rows.append(ProfileRow(split=SPLIT_OF_DIR[record["split"]], n_frames=int(record["n_frames"]),
                                       fps=float(record["fps"]), two_person_half=record["two_person_half"] == "1"))
            except (KeyError, ValueError) as err:
                raise ValueError(f"{path}, line {line}: {record} ({err!r})") from err
    return rows


def sample_names(rows: list[ProfileRow]) -> list[str]:
    """One sample name per row: `<split>_<nnn>`, or `<split>_<nnn>_left` / `_right` for two-person halves."""
    names: list[str] = []
    counts: dict[str, int] = {}
    i = 0
    while i < len(rows):
        row = rows[i]
        counts[row.split] = counts.get(row.split, 0) + 1
        video = f"{row.split}_{counts[row.split]:03d}"
        partner = rows[i + 1] if i + 1 < len(rows) else None
        if row.two_person_half and partner == row:
            names += [f"{video}_left", f"{video}_right"]
            i += 2
            continue
        names.append(f"{video}_left" if row.two_person_half else video)
        i += 1
    return names


def write_placeholder_corpus(rows: list[ProfileRow], root: Path, tasks: tuple[str, ...] = TASKS) -> list[str]:
    """Aff-Wild2 layout under `root` with empty videos and annotations for every task; the video names."""
    root = Path(root)
    names = sample_names(rows)
    videos = sorted({video_of(name) for name in names})
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for video in videos:
        (root / "videos" / f"{video}{PLACEHOLDER_SUFFIX}").touch()
    for task in tasks:
        tests = []
        for row, name in zip(rows, names, strict=True):
            if row.split == "test":
                tests.append(name)
                continue
            path = annotation_path(root, task, row.split, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        test_list = challenge_test_list(root, task)
        test_list.parent.mkdir(parents=True, exist_ok=True)
        test_list.write_text("".join(f"{name}\n" for name in tests))
    return videos
