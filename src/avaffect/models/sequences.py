"""Label-rate sequences: a sample's embeddings at their steps, with the labels of those steps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.core.tables import HEAD_COLUMN_PREFIX, read_parquet
from avaffect.corpus.annotations import align_to_frames, read_annotation
from avaffect.corpus.layout import annotation_path, video_of
from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_DIMENSIONS, VA_INVALID
from avaffect.media.timeline import majority_per_slot, slot_of_steps
from avaffect.models.extractors import DEFAULT_INPUTS

TASK_OUTPUTS = {"va": len(VA_DIMENSIONS), "expr": len(EXPR_CLASSES)}
INVALID_MARKERS = {"va": f"{VA_INVALID:g}", "expr": f"{EXPR_INVALID}"}


@dataclass
class StepSequence:
    """One stretch of label-rate steps of one video: embeddings, where they exist, and labels."""

    video: str
    frames: np.ndarray  # (T,) 1-based frame numbers
    times: np.ndarray  # (T,) seconds
    features: np.ndarray  # (T, F) float32, NaN rows where there is no embedding (no face)
    labels: np.ndarray | None = None  # (T, 2) float with NaN, or (T,) int with -1
    copy: str | None = None  # the augmented copy of the video's audio these embeddings are of; None: the original

    @property
    def present(self) -> np.ndarray:
        return ~np.isnan(self.features).any(axis=1)


def sequences_from_table(table: pd.DataFrame, video: str, group: str | None, copy: str | None,
                         inputs: str = DEFAULT_INPUTS) -> list[StepSequence]:
    """Sequences of an embedding table: one per video, or one per value of `group` (audio windows); `copy` names
    the augmented copy the table embeds. Their features are what `inputs` selects (`step_features`)."""
    keys = [None] if group is None else sorted(table[group].unique())
    out = []
    for key in keys:
        part = table if key is None else table[table[group] == key]
        part = part.sort_values("time_s")
        out.append(StepSequence(video, part["frame"].to_numpy(np.int64), part["time_s"].to_numpy(float),
                                step_features(part, inputs), copy=copy))
    return out


def head_columns(table: pd.DataFrame) -> list[str]:
    """The columns of a static model's head outputs (`head_<output>`), in the file's order."""
    return [c for c in table.columns if c.startswith(HEAD_COLUMN_PREFIX)]


def step_features(part: pd.DataFrame, inputs: str) -> np.ndarray:
    """(T, F) float32 features of an embedding table's rows, NaN rows where there is none (no face): the
    `embedding` column, the head outputs (`head_columns`), or both, embedding first (models.extractors
    MODEL_INPUTS)."""
    embedding = None
    if inputs != "head":
        dim = max((len(e) for e in part["embedding"] if e is not None), default=0)
        embedding = np.full((len(part), dim), np.nan, np.float32)
        for i, emb in enumerate(part["embedding"]):
            if emb is not None:
                embedding[i] = emb
        if inputs == "embedding":
            return embedding
    head = part[head_columns(part)].to_numpy(np.float32)
    return head if embedding is None else np.concatenate([embedding, head], axis=1)


def attach_labels(sequence: StepSequence, labels: np.ndarray) -> StepSequence:
    """Labels of the sequence's frames from per-frame labels already aligned to the video's frames."""
    sequence.labels = labels[sequence.frames - 1]
    return sequence


def attach_window_labels(sequence: StepSequence, labels: np.ndarray, fps: float, slot_s: float
                         ) -> StepSequence:
    """Labels of an audio window, as the SUN paper forms them: a VA window keeps the values of its steps
    (20 for 4 s at 5 Hz; invalid ones stay NaN and are masked), an EXPR window one label per `slot_s`
    (4 for 4 s), the most frequent valid class of the video frames in that slot, given to each of its steps.
    """
    sequence.labels = window_step_labels(sequence.frames, sequence.times, labels, fps, slot_s)
    return sequence


def window_step_labels(frames: np.ndarray, times: np.ndarray, labels: np.ndarray, fps: float, slot_s: float
                       ) -> np.ndarray:
    """Labels of the steps (1-based video `frames` at `times`) of one audio window, as
    `attach_window_labels` forms them from per-frame labels aligned to the video's frames."""
    if labels.dtype.kind == "f":
        return labels[frames - 1]
    start = float(times[0])
    slots = slot_of_steps(times, start, slot_s)
    return majority_per_slot(labels, fps, start, int(slots.max()) + 1, slot_s, EXPR_INVALID)[slots]


def valid_labels(task: str, labels: np.ndarray) -> np.ndarray:
    return ~np.isnan(labels).any(axis=-1) if task == "va" else labels != EXPR_INVALID


def window_label(task: str, labels: np.ndarray) -> np.ndarray:
    """One label for a window from its steps' `labels`: the mean of the valid VA pairs, or the most frequent valid
    class (ties go to the lowest); NaN / EXPR_INVALID when none is valid."""
    labels = labels[valid_labels(task, labels)]
    if task == "va":
        return labels.mean(axis=0) if len(labels) else np.full(len(VA_DIMENSIONS), np.nan)
    return np.bincount(labels, minlength=len(EXPR_CLASSES)).argmax() if len(labels) else np.int64(EXPR_INVALID)


def video_sequences(embedding_file: Path, video: str, modality: str, copy: str | None = None,
                    inputs: str = DEFAULT_INPUTS) -> list[StepSequence]:
    """Face embeddings form one sequence per video; audio embeddings one per voiced window. `copy` names the
    augmented copy of the audio that `embedding_file` embeds; `inputs` selects the features (`step_features`).
    A file without head outputs, read for them, is an error naming it."""
    table = read_parquet(embedding_file)
    if inputs != DEFAULT_INPUTS and not head_columns(table):
        raise ValueError(f"{embedding_file}: no {HEAD_COLUMN_PREFIX}* columns, but inputs: {inputs} reads a static "
                         "model's head outputs; only the embeddings of a static model (static_models) have them")
    if table.empty:
        return []
    return sequences_from_table(table, video, "window" if modality == "audio" else None, copy, inputs)


def sample_labels(corpus: Path, task: str, split: str, sample: str, n_frames: int, log) -> np.ndarray:
    """The sample's labels aligned to its video's `n_frames` decoded frames; a length mismatch and a sample
    without any valid label are logged."""
    path = annotation_path(corpus, task, split, sample)
    labels = read_annotation(path, task)
    if len(labels) != n_frames:
        log(f"{path}: {len(labels)} label lines for {n_frames} decoded frames; frame k takes line k, "
            "frames without a line are invalid")
    aligned = align_to_frames(labels, n_frames)
    if not valid_labels(task, aligned).any():
        log(f"{path}: no valid label on any of the {n_frames} frames (all {INVALID_MARKERS[task]}); "
            f"{sample} adds nothing to the {split} set")
    return aligned


def labelled_sequences(samples: Sequence[str], task: str, split: str, corpus: Path, modality: str,
                       embeddings: Mapping[str, Path], augmented: Mapping[str, Mapping[str, Path]],
                       probes: dict[str, dict], log, expr_label_s: float, inputs: str = DEFAULT_INPUTS
                       ) -> list[StepSequence]:
    """Sequences of the samples with their labels, from their `embeddings`, then from each augmented copy
    (`augmented`: copy -> sample -> file) that has the sample; a copy carries its sample's labels and its name
    (`StepSequence.copy`). Annotation/video length mismatches are logged.

    Audio windows take window labels (`attach_window_labels`, EXPR by majority per `expr_label_s`); `inputs`
    selects the features (`step_features`)."""
    sources = [(None, embeddings), *augmented.items()]
    out = []
    for sample in samples:
        video = video_of(sample)
        aligned = sample_labels(corpus, task, split, sample, probes[video]["n_frames"], log)
        for copy, files in sources:
            if sample not in files:
                continue
            sequences = video_sequences(files[sample], sample, modality, copy, inputs)
            if modality == "audio":
                out += [attach_window_labels(s, aligned, probes[video]["fps"], expr_label_s) for s in sequences]
            else:
                out += [attach_labels(s, aligned) for s in sequences]
    return out


def require_labelled_steps(task: str, split: str, sequences: Sequence[StepSequence], what: str) -> int:
    """The number of steps that have both an embedding and a valid label; none is an error naming `what`."""
    steps = sum(int((valid_labels(task, s.labels) & s.present).sum()) for s in sequences)
    if steps == 0:
        raise ValueError(f"{what}: no {split} step has both an embedding and a valid {task} label "
                         f"({len(sequences)} sequences); check the {split} annotation files and the face and "
                         "voice outputs their logs name")
    return steps


def require_finite_predictions(what: str, outputs: np.ndarray, videos: np.ndarray, times_s: np.ndarray) -> None:
    """Refuse predictions (rows, outputs) that hold a NaN (or an infinity), naming `what` (model, task, window) and
    the video and time of the first such row.

    A NaN prediction would make a validation score NaN, and an EXPR argmax would take it for class 0, silently.
    A step without an embedding is no such case: the model sees it as zeros with the presence flag off
    (`Normalizer.transform`).
    """
    bad = ~np.isfinite(outputs).all(axis=-1)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(f"{what}: {int(bad.sum())} of {len(bad)} predictions are NaN or infinite, the first for "
                         f"'{videos[first]}' at {times_s[first]:.2f} s; check the training log for a diverged loss and "
                         "that video's embeddings for infinite values")


def prediction_table(sequences: Sequence[StepSequence], outputs: Sequence[np.ndarray], columns: list[str]
                     ) -> pd.DataFrame:
    """Rows (video, frame, time_s, one column per output) for the steps that had an embedding."""
    parts = [pd.DataFrame({"video": pd.Series(dtype=str), "frame": pd.Series(dtype="int64"),
                           "time_s": pd.Series(dtype=float)} | {c: pd.Series(dtype=float) for c in columns})]
    for seq, out in zip(sequences, outputs, strict=True):
        keep = seq.present
        part = pd.DataFrame(out[keep].astype(np.float64), columns=columns)
        part.insert(0, "time_s", seq.times[keep])
        part.insert(0, "frame", seq.frames[keep])
        part.insert(0, "video", seq.video)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
