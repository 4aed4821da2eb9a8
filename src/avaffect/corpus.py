"""The Aff-Wild2 corpus: which samples exist, their splits, videos and per-frame annotations."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VA_DIMENSIONS = ("valence", "arousal")
EXPR_CLASSES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
VA_INVALID = -5.0
EXPR_INVALID = -1
TASKS = ("va", "expr")
SPLITS = ("train", "validation", "test")
LABELLED_SPLITS = ("train", "validation")

PREDICTION_COLUMNS = {"va": VA_DIMENSIONS, "expr": EXPR_CLASSES}

TASK_DIRS = {"va": "VA_Estimation_Challenge", "expr": "EXPR_Recognition_Challenge"}
SPLIT_DIRS = {"train": "Train_Set", "validation": "Validation_Set", "test": "Test_Set"}
HEADERS = {"va": ",".join(VA_DIMENSIONS), "expr": ",".join(EXPR_CLASSES)}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
TWO_PERSON_SUFFIXES = ("_left", "_right")
NAME_ENCODING = "utf-8"
"""Of every text file that holds sample names (test lists, submissions), whatever the locale: a name may
have any character."""


class SampleSetError(ValueError):
    """A sample-set file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class SampleSet:
    """The files that the model jobs of one task, split and embedding extractor read, listed in one file.

    Training and prediction depend on this one file instead of on every sample's files: Snakemake's DAG build
    time grows with the number of dependency edges, and each model job listing every sample's embedding, probe
    and annotation made an Aff-Wild2-size DAG several times slower to build.
    """

    task: str
    split: str
    samples: tuple[str, ...]
    embeddings: dict[str, str]
    probes: dict[str, str]
    augmented: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"task": self.task, "split": self.split, "samples": list(self.samples), "embeddings": self.embeddings,
                "probes": self.probes, "augmented": self.augmented}


def sample_set(task: str, split: str, samples: list[str], embeddings: list[str], probes: list[str],
               augmented: list[str]) -> SampleSet:
    """A sample set from the paths its rule lists: `embeddings` in the order of `samples`, probes named
    `<video>.json`, augmented copies as `.../<copy>/<sample>.parquet`."""
    if len(embeddings) != len(samples):
        raise SampleSetError(f"{task} {split}: {len(samples)} samples but {len(embeddings)} embedding files")
    copies: dict[str, dict[str, str]] = {}
    for path in map(Path, augmented):
        copies.setdefault(path.parent.name, {})[path.stem] = str(path)
    return SampleSet(task, split, tuple(samples), dict(zip(samples, map(str, embeddings), strict=True)),
                     {Path(p).stem: str(p) for p in probes}, copies)


def read_sample_set(path: Path) -> SampleSet:
    try:
        data = json.loads(Path(path).read_text())
        found = SampleSet(data["task"], data["split"], tuple(data["samples"]), data["embeddings"], data["probes"],
                          data["augmented"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SampleSetError(f"{path}: not a readable sample set ({err!r}); delete it and rerun") from err
    missing = [s for s in found.samples if s not in found.embeddings]
    if missing:
        raise SampleSetError(f"{path}: samples without an embedding file: {', '.join(missing[:5])}")
    return found


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message names the file and the line."""


class CorpusError(ValueError):
    """A corpus whose layout is incomplete; the message names what is missing."""


def annotation_path(root: Path, task: str, split: str, name: str) -> Path:
    return Path(root) / TASK_DIRS[task] / SPLIT_DIRS[split] / f"{name}.txt"


def challenge_test_list(root: Path, task: str) -> Path:
    """The organisers' list of test sample names, one per line."""
    return Path(root) / TASK_DIRS[task] / f"{SPLIT_DIRS['test']}.txt"


def video_of(sample: str) -> str:
    """The video a sample reads: two-person samples `<video>_left` / `_right` share one video."""
    side = side_of(sample)
    return sample[: -len(side) - 1] if side else sample


def probes_by_sample(samples: list[str], probes: dict[str, dict]) -> dict[str, dict]:
    """The probe of each sample's video, keyed by sample."""
    return {sample: probes[video_of(sample)] for sample in samples}


def side_of(sample: str) -> str | None:
    """Which person of a two-person video the sample annotates ("left" / "right"), or None."""
    for suffix in TWO_PERSON_SUFFIXES:
        if sample.endswith(suffix):
            return suffix[1:]
    return None


@dataclass(frozen=True)
class Manifest:
    """Samples per task and split, and the video file of every video they read."""

    samples: dict[str, dict[str, list[str]]]  # task -> split -> sample names
    videos: dict[str, Path] = field(default_factory=dict)  # video name -> file

    def split_of(self, task: str, sample: str) -> str:
        for split, names in self.samples[task].items():
            if sample in names:
                return split
        raise KeyError(f"{sample} is not a {task} sample")


def _find_video(root: Path, video: str) -> Path:
    found = [root / "videos" / f"{video}{suffix}" for suffix in VIDEO_SUFFIXES]
    found = [path for path in found if path.exists()]
    if not found:
        raise CorpusError(f"{root / 'videos'}: no video file for '{video}' (tried {', '.join(VIDEO_SUFFIXES)})")
    if len(found) > 1:
        raise CorpusError(f"{root / 'videos'}: several files for '{video}': {[p.name for p in found]}")
    return found[0]


def scan_corpus(root: Path, tasks: tuple[str, ...] = TASKS) -> Manifest:
    """Samples from the annotation folders and test lists of a corpus in Aff-Wild2 layout."""
    root = Path(root)
    samples: dict[str, dict[str, list[str]]] = {}
    for task in tasks:
        per_split = {}
        for split in LABELLED_SPLITS:
            folder = annotation_path(root, task, split, "x").parent
            if not folder.is_dir():
                raise CorpusError(f"{folder}: annotation folder is missing")
            per_split[split] = sorted(p.stem for p in folder.glob("*.txt"))
        test_list = challenge_test_list(root, task)
        if not test_list.is_file():
            raise CorpusError(f"{test_list}: list of {task} test samples is missing")
        lines = test_list.read_text(encoding=NAME_ENCODING).splitlines()
        per_split["test"] = [line.strip() for line in lines if line.strip()]
        samples[task] = per_split
    names = {video_of(s) for per_split in samples.values() for names in per_split.values() for s in names}
    return Manifest(samples=samples, videos={v: _find_video(root, v) for v in sorted(names)})


def read_annotation(path: Path, task: str) -> np.ndarray:
    """Per-frame labels: VA as (n, 2) float with NaN for invalid frames, EXPR as (n,) int with -1."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise AnnotationError(f"{path}: cannot read annotation ({err})") from err
    if not lines or lines[0].strip().replace(" ", "") != HEADERS[task]:
        raise AnnotationError(f"{path}: first line must be '{HEADERS[task]}'")
    rows = [line.strip() for line in lines[1:]]
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise AnnotationError(f"{path}: no label lines after the header")
    return _parse_va(path, rows) if task == "va" else _parse_expr(path, rows)


def _parse_va(path: Path, rows: list[str]) -> np.ndarray:
    values = np.empty((len(rows), len(VA_DIMENSIONS)))
    for i, row in enumerate(rows):
        try:
            values[i] = [float(x) for x in row.split(",")]
        except ValueError as err:
            raise AnnotationError(f"{path}: line {i + 2}: expected 'valence,arousal', got '{row}'") from err
    invalid = (values == VA_INVALID).any(axis=1)
    if (np.abs(values[~invalid]) > 1).any():
        line = int(np.flatnonzero((np.abs(values) > 1).any(axis=1) & ~invalid)[0]) + 2
        raise AnnotationError(f"{path}: line {line}: values must lie in [-1, 1] or be {VA_INVALID:g}")
    values[invalid] = np.nan
    return values


def _parse_expr(path: Path, rows: list[str]) -> np.ndarray:
    try:
        labels = np.array([int(row) for row in rows], dtype=np.int64)
    except ValueError as err:
        raise AnnotationError(f"{path}: every line after the header must be one integer class") from err
    bad = (labels != EXPR_INVALID) & ((labels < 0) | (labels >= len(EXPR_CLASSES)))
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 2
        raise AnnotationError(f"{path}: line {line}: class must be 0..{len(EXPR_CLASSES) - 1} or {EXPR_INVALID}")
    return labels


def align_to_frames(labels: np.ndarray, n_frames: int) -> np.ndarray:
    """Labels for exactly `n_frames` frames: extra lines are dropped, missing frames are invalid.

    Frame k always takes line k: a length mismatch never shifts labels in time.
    """
    if len(labels) >= n_frames:
        return labels[:n_frames]
    pad_shape = (n_frames - len(labels), *labels.shape[1:])
    pad = np.full(pad_shape, np.nan) if labels.dtype.kind == "f" else np.full(pad_shape, EXPR_INVALID)
    return np.concatenate([labels, pad.astype(labels.dtype)])
