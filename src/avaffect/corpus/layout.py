"""The Aff-Wild2 corpus on disk: its folders, which samples exist in which split, and which video each reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from avaffect.corpus.tasks import LABELLED_SPLITS, TASKS

TASK_DIRS = {"va": "VA_Estimation_Challenge", "expr": "EXPR_Recognition_Challenge"}
SPLIT_DIRS = {"train": "Train_Set", "validation": "Validation_Set", "test": "Test_Set"}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")
TWO_PERSON_SUFFIXES = ("_left", "_right")
NAME_ENCODING = "utf-8"
"""Of every text file that holds sample names (test lists, submissions), whatever the locale: a name may
have any character."""


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
