"""Sample sets: the files one split of one task reads, listed in one file so that model jobs depend on it
alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


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
