"""Label-rate sequences from embeddings and labels, training with model selection, and prediction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from avaffect.checkpoints import state_copy
from avaffect.corpus import (
    EXPR_CLASSES,
    EXPR_INVALID,
    VA_DIMENSIONS,
    VA_INVALID,
    align_to_frames,
    annotation_path,
    read_annotation,
    video_of,
)
from avaffect.features import functionals
from avaffect.kelm import KernelELM, class_balance_weights, decode_scores, encode_targets, select_C
from avaffect.metrics import PRIMARY_METRIC, expr_scores, va_scores
from avaffect.models import ModelConfig, build_model, output_activation
from avaffect.tables import read_parquet
from avaffect.windows import majority_per_slot, sliding_starts, slot_of_steps

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

    @property
    def present(self) -> np.ndarray:
        return ~np.isnan(self.features).any(axis=1)


def sequences_from_table(table: pd.DataFrame, video: str, group: str | None) -> list[StepSequence]:
    """Sequences of an embedding table: one per video, or one per value of `group` (audio windows)."""
    keys = [None] if group is None else sorted(table[group].unique())
    out = []
    for key in keys:
        part = table if key is None else table[table[group] == key]
        part = part.sort_values("time_s")
        dim = max((len(e) for e in part["embedding"] if e is not None), default=0)
        features = np.full((len(part), dim), np.nan, np.float32)
        for i, emb in enumerate(part["embedding"]):
            if emb is not None:
                features[i] = emb
        out.append(StepSequence(video, part["frame"].to_numpy(np.int64), part["time_s"].to_numpy(float), features))
    return out


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


NORMALIZATIONS = ("zscore", "minmax", "per_video_minmax")


@dataclass(frozen=True)
class Normalizer:
    """Embedding normalisation; steps without an embedding become zeros and a presence flag says so.

    zscore and minmax use training-set statistics; per_video_minmax scales each video by its own range
    (it needs no labels, so test videos are scaled the same way).
    """

    kind: str
    offset: np.ndarray | None = None
    scale: np.ndarray | None = None

    @classmethod
    def fit(cls, sequences: Sequence[StepSequence], kind: str) -> Normalizer:
        if kind not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization '{kind}' (expected one of {', '.join(NORMALIZATIONS)})")
        if kind == "per_video_minmax":
            return cls(kind)
        stacked = np.concatenate([s.features[s.present] for s in sequences])
        if kind == "zscore":
            return cls(kind, stacked.mean(axis=0), np.maximum(stacked.std(axis=0), MIN_SCALE))
        low = stacked.min(axis=0)
        return cls(kind, low, np.maximum(stacked.max(axis=0) - low, MIN_SCALE))

    def transform(self, sequences: Sequence[StepSequence]) -> list[np.ndarray]:
        """Model inputs (steps, features + 1) of each sequence."""
        ranges = _video_ranges(sequences) if self.kind == "per_video_minmax" else {}
        out = []
        for seq in sequences:
            offset, scale = ranges.get(seq.video, (self.offset, self.scale))
            present = seq.present
            scaled = np.where(present[:, None], (seq.features - offset) / scale, 0.0)
            out.append(np.concatenate([scaled, present[:, None]], axis=1).astype(np.float32))
        return out

    def to_state(self) -> dict:
        """Tensors and plain values only, so checkpoints load with torch.load(weights_only=True)."""
        return {"kind": self.kind, "offset": _tensor(self.offset), "scale": _tensor(self.scale)}

    @classmethod
    def from_state(cls, state: dict) -> Normalizer:
        return cls(state["kind"], _array(state["offset"]), _array(state["scale"]))


def _tensor(values: np.ndarray | None) -> torch.Tensor | None:
    return None if values is None else torch.from_numpy(np.asarray(values, np.float32))


def _array(values: torch.Tensor | None) -> np.ndarray | None:
    return None if values is None else values.numpy()


MIN_SCALE = 1e-6


def _video_ranges(sequences: Sequence[StepSequence]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ranges = {}
    for video in {s.video for s in sequences}:
        rows = [s.features[s.present] for s in sequences if s.video == video]
        stacked = np.concatenate(rows) if rows else np.zeros((0, 0))
        if len(stacked) == 0:
            dim = sequences[0].features.shape[1]
            ranges[video] = (np.zeros(dim), np.ones(dim))
            continue
        low = stacked.min(axis=0)
        ranges[video] = (low, np.maximum(stacked.max(axis=0) - low, MIN_SCALE))
    return ranges


def valid_labels(task: str, labels: np.ndarray) -> np.ndarray:
    return ~np.isnan(labels).any(axis=-1) if task == "va" else labels != EXPR_INVALID


@dataclass(frozen=True)
class Windows:
    inputs: torch.Tensor  # (N, L, F + 1)
    targets: torch.Tensor  # (N, L, 2) float or (N, L) long
    mask: torch.Tensor  # (N, L) bool: a valid label on a present step
    padding: torch.Tensor  # (N, L) bool: True where the window runs past the sequence


def make_windows(sequences: Sequence[StepSequence], normalized: Sequence[np.ndarray], task: str, length: int,
                 hop: int) -> Windows:
    """Training windows of `length` steps every `hop` steps, with targets, loss mask and padding."""
    inputs, targets, mask, padding = [], [], [], []
    for seq, x in zip(sequences, normalized, strict=True):
        n_in = x.shape[1]
        ok = valid_labels(task, seq.labels) & seq.present
        y = np.nan_to_num(seq.labels, nan=0.0) if task == "va" else np.where(ok, seq.labels, 0)
        for start in sliding_starts(len(x), length, hop):
            stop = min(start + length, len(x))
            n = stop - start
            xi = np.zeros((length, n_in), np.float32)
            xi[:n] = x[start:stop]
            yi = np.zeros((length, *y.shape[1:]), y.dtype)
            yi[:n] = y[start:stop]
            mi = np.zeros(length, bool)
            mi[:n] = ok[start:stop]
            pi = np.ones(length, bool)
            pi[:n] = False
            inputs.append(xi), targets.append(yi), mask.append(mi), padding.append(pi)
    target_dtype = torch.float32 if task == "va" else torch.long
    return Windows(torch.from_numpy(np.stack(inputs)), torch.as_tensor(np.stack(targets), dtype=target_dtype),
                   torch.from_numpy(np.stack(mask)), torch.from_numpy(np.stack(padding)))


def class_weights(sequences: Sequence[StepSequence], n_classes: int) -> np.ndarray:
    """Inverse class frequency over the sequences' valid labels (see `class_weights_of`)."""
    return class_weights_of(np.concatenate([s.labels for s in sequences]), n_classes)


def class_weights_of(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Inverse class frequency of the valid EXPR labels, mean 1 over the classes that occur; absent classes
    weigh 0."""
    labels = labels[valid_labels("expr", labels)]
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return weights / weights[counts > 0].mean()


LOSSES = ("mse", "ccc")


def batch_ccc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - CCC per dimension, averaged (the USTC loss); population moments over the batch's valid steps."""
    mean_p, mean_t = pred.mean(dim=0), target.mean(dim=0)
    var_p, var_t = pred.var(dim=0, unbiased=False), target.var(dim=0, unbiased=False)
    cov = ((pred - mean_p) * (target - mean_t)).mean(dim=0)
    ccc = 2 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + MIN_SCALE)
    return (1 - ccc).mean()


def masked_loss(task: str, loss: str, raw: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                weights: torch.Tensor | None, label_smoothing: float = 0.0) -> torch.Tensor:
    """VA: mean squared error or 1 - CCC on tanh outputs; EXPR: (class-weighted, label-smoothed)
    cross-entropy."""
    if task == "expr":
        return nn.functional.cross_entropy(raw[mask], targets[mask], weight=weights,
                                           label_smoothing=label_smoothing)
    pred, target = torch.tanh(raw)[mask], targets[mask]
    return batch_ccc_loss(pred, target) if loss == "ccc" else ((pred - target) ** 2).mean()


@dataclass(frozen=True)
class TrainSettings:
    window: int  # steps
    hop: int  # steps between training windows
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    patience: int  # epochs without a better validation score before stopping
    seed: int
    normalization: str = "zscore"
    loss: str = "mse"
    label_smoothing: float = 0.0  # EXPR cross-entropy


def audio_architecture(settings: dict, task: str, expr_label_s: float, rate_hz: float) -> dict:
    """ModelConfig fields of an audio model from config `audio_model`: EXPR outputs one label per
    `expr_label_s` (its steps aggregated by the temporal CNN), VA one per step."""
    return {"audio_units": settings["units"], "audio_gru_layers": settings["gru_layers"],
            "audio_heads": tuple(settings["heads"]), "audio_dense": settings["dense"],
            "dropout": settings["dropout"], "slot_steps": round(expr_label_s * rate_hz) if task == "expr" else 1}


def score(task: str, sequences: Sequence[StepSequence], predictions: Sequence[np.ndarray]) -> dict[str, float]:
    truth = np.concatenate([s.labels[s.present] for s in sequences])
    pred = np.concatenate([p[s.present] for s, p in zip(sequences, predictions, strict=True)])
    if task == "va":
        return va_scores(truth, pred)
    return expr_scores(truth, pred.argmax(axis=1))


def predict(model: nn.Module, normalizer: Normalizer, task: str, sequences: Sequence[StepSequence],
            window: int, hop: int, device: str) -> list[np.ndarray]:
    """Per-step predictions of every sequence; overlapping windows are averaged."""
    model.eval()
    out = []
    with torch.inference_mode():
        for inputs in normalizer.transform(sequences):
            x = torch.from_numpy(inputs).to(device)
            total = torch.zeros(len(x), model.config.n_outputs, device=device)
            count = torch.zeros(len(x), 1, device=device)
            for start in sliding_starts(len(x), window, hop):
                stop = min(start + window, len(x))
                total[start:stop] += output_activation(task, model(x[None, start:stop]))[0]
                count[start:stop] += 1
            out.append((total / count).cpu().numpy())
    return out


@dataclass
class EarlyStopping:
    """The epoch best on validation by `metric`, and whether `patience` epochs have passed without a better one."""

    metric: str
    patience: int
    best_epoch: int | None = None
    best_score: float = float("nan")
    stale: int = 0

    def improved(self, epoch: int, scores: dict[str, float]) -> bool:
        """Whether `epoch` scores better than every epoch before it (the caller keeps its weights)."""
        if self.best_epoch is None or scores[self.metric] > self.best_score:
            self.best_epoch, self.best_score, self.stale = epoch, scores[self.metric], 0
            return True
        self.stale += 1
        return False

    def exhausted(self, epoch: int, log) -> bool:
        if self.stale < self.patience:
            return False
        log(f"early stop after {epoch} epochs: best epoch {self.best_epoch}")
        return True


def train(task: str, train_set: Sequence[StepSequence], validation_set: Sequence[StepSequence], family: str,
          architecture: dict, settings: TrainSettings, device: str, log) -> tuple[dict, list[dict]]:
    """Train one model; keep the epoch with the best validation score. Returns checkpoint and history.

    Mixed precision (bfloat16) on CUDA; seeds fixed; early stopping after `patience` epochs without a
    better validation score.
    """
    torch.manual_seed(settings.seed)
    normalizer = Normalizer.fit(train_set, settings.normalization)
    n_features = train_set[0].features.shape[1] + 1
    config = ModelConfig(family=family, n_features=n_features, n_outputs=TASK_OUTPUTS[task], **architecture)
    model = build_model(config).to(device)
    data = make_windows(train_set, normalizer.transform(train_set), task, settings.window, settings.hop)
    weights = None
    if task == "expr":
        weights = torch.tensor(class_weights(train_set, TASK_OUTPUTS[task]), dtype=torch.float32, device=device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    use_amp = device.startswith("cuda")
    generator = torch.Generator().manual_seed(settings.seed)
    metric = PRIMARY_METRIC[task]
    stopping = EarlyStopping(metric, settings.patience)
    best: dict | None = None
    history: list[dict] = []
    for epoch in range(1, settings.epochs + 1):
        model.train()
        order = torch.randperm(len(data.inputs), generator=generator)
        losses = []
        for batch in order.split(settings.batch_size):
            mask = data.mask[batch].to(device)
            if not mask.any():
                continue
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=use_amp):
                raw = model(data.inputs[batch].to(device), data.padding[batch].to(device))
            loss = masked_loss(task, settings.loss, raw.float(), data.targets[batch].to(device), mask, weights,
                               settings.label_smoothing)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        scores = score(task, validation_set,
                       predict(model, normalizer, task, validation_set, settings.window, settings.hop, device))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), **scores})
        log(f"epoch {epoch}: loss {np.mean(losses):.4f} validation {metric} {scores[metric]:.4f}")
        if stopping.improved(epoch, scores):
            best = {"task": task, "config": config.to_dict(), "state_dict": state_copy(model), "epoch": epoch,
                    "scores": {k: float(v) for k, v in scores.items()}, "normalizer": normalizer.to_state(),
                    "window": settings.window, "hop": settings.hop}
        elif stopping.exhausted(epoch, log):
            break
    return best, history


def load_checkpoint(checkpoint: dict, device: str) -> tuple[nn.Module, Normalizer]:
    config = dict(checkpoint["config"])
    for key in ("tcn_dilations", "audio_heads"):
        if key in config:
            config[key] = tuple(config[key])
    model = build_model(ModelConfig(**config))
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device), Normalizer.from_state(checkpoint["normalizer"])


def video_sequences(embedding_file: Path, video: str, modality: str) -> list[StepSequence]:
    """Face embeddings form one sequence per video; audio embeddings one per voiced window."""
    table = read_parquet(embedding_file)
    if table.empty:
        return []
    return sequences_from_table(table, video, "window" if modality == "audio" else None)


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
                       embedding_sets: Sequence[dict[str, Path]], probes: dict[str, dict], log, expr_label_s: float
                       ) -> list[StepSequence]:
    """Sequences of the samples with their labels, from each embedding set that has the sample (the originals,
    then augmented copies, which carry their sample's labels); annotation/video length mismatches are logged.

    Audio windows take window labels (`attach_window_labels`, EXPR by majority per `expr_label_s`)."""
    out = []
    for sample in samples:
        video = video_of(sample)
        aligned = sample_labels(corpus, task, split, sample, probes[video]["n_frames"], log)
        for embeddings in embedding_sets:
            if sample not in embeddings:
                continue
            sequences = video_sequences(embeddings[sample], sample, modality)
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


@dataclass(frozen=True)
class KelmSettings:
    window_s: float  # functionals over non-overlapping windows of this length
    kernel: str
    Cs: tuple[float, ...]
    weighted: bool  # EXPR: instance weights inversely proportional to class counts
    folds: int
    normalization: str = "zscore"


def window_labels(task: str, seq: StepSequence, starts: np.ndarray, window_s: float) -> np.ndarray:
    """A window's label: mean of the valid VA steps, or the most frequent valid class; invalid if none."""
    index = np.searchsorted(starts, seq.times, side="right") - 1
    inside = (index >= 0) & (seq.times < starts[np.clip(index, 0, None)] + window_s)
    ok = valid_labels(task, seq.labels) & inside
    if task == "va":
        out = np.full((len(starts), len(VA_DIMENSIONS)), np.nan)
        for w in np.unique(index[ok]):
            out[w] = seq.labels[ok & (index == w)].mean(axis=0)
        return out
    out = np.full(len(starts), EXPR_INVALID)
    for w in np.unique(index[ok]):
        out[w] = np.bincount(seq.labels[ok & (index == w)], minlength=len(EXPR_CLASSES)).argmax()
    return out


def _functional_rows(sequences: Sequence[StepSequence], inputs: Sequence[np.ndarray], window_s: float
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(window starts, functionals with a constant column) per sequence; the constant is the KELM's bias."""
    rows = []
    for seq, x in zip(sequences, inputs, strict=True):
        features = np.where(seq.present[:, None], x[:, :-1], np.nan)
        starts, matrix = functionals(seq.times, features, window_s)
        rows.append((starts, np.concatenate([matrix, np.ones((len(matrix), 1), np.float32)], axis=1)))
    return rows


def _kelm_data(task: str, sequences: Sequence[StepSequence], normalizer: Normalizer, window_s: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, labels, groups = [], [], []
    for seq, (starts, matrix) in zip(sequences, _functional_rows(sequences, normalizer.transform(sequences),
                                                                 window_s), strict=True):
        X.append(matrix)
        labels.append(window_labels(task, seq, starts, window_s))
        groups += [seq.video] * len(matrix)
    labels_all = np.concatenate(labels)
    keep = valid_labels(task, labels_all)
    return np.concatenate(X)[keep], labels_all[keep], np.array(groups)[keep]


def train_kelm(task: str, train_set: Sequence[StepSequence], validation_set: Sequence[StepSequence],
               settings: KelmSettings, log) -> dict:
    """Functionals + kernel ELM: C chosen by cross-validation over training videos, then fit on all of them."""
    normalizer = Normalizer.fit(train_set, settings.normalization)
    X, labels, groups = _kelm_data(task, train_set, normalizer, settings.window_s)
    weighted = settings.weighted and task == "expr"
    C, cv_scores = select_C(X, labels, groups, task, settings.Cs, settings.kernel, weighted=weighted,
                            n_folds=settings.folds)
    log(f"C by grouped {settings.folds}-fold cross-validation: {C:g} ({cv_scores})")
    weights = class_balance_weights(labels, len(EXPR_CLASSES)) if weighted else None
    model = KernelELM(settings.kernel, C).fit(X, encode_targets(task, labels), weights)
    checkpoint = {"family": "kelm", "task": task, "kelm": model.to_state(), "normalizer": normalizer.to_state(),
                  "window_s": settings.window_s, "C": C,
                  "cv_scores": {f"{c:g}": float(v) for c, v in cv_scores.items()}}
    val_X, val_labels, _ = _kelm_data(task, validation_set, normalizer, settings.window_s)
    scores = window_scores(task, val_labels, decode_scores(task, model.predict(val_X)))
    checkpoint["scores"] = scores
    return checkpoint


def window_scores(task: str, labels: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    scores = va_scores(labels, outputs) if task == "va" else expr_scores(labels, outputs.argmax(axis=1))
    return {k: float(v) for k, v in scores.items()}


def predict_kelm(checkpoint: dict, sequences: Sequence[StepSequence], columns: list[str]) -> pd.DataFrame:
    """Rows (video, frame, time_s, outputs) at the centre of every functional window with a face."""
    model = KernelELM.from_state(checkpoint["kelm"])
    normalizer = Normalizer.from_state(checkpoint["normalizer"])
    window_s = checkpoint["window_s"]
    outputs, steps = [], []
    for seq, (starts, matrix) in zip(sequences, _functional_rows(sequences, normalizer.transform(sequences),
                                                                 window_s), strict=True):
        if len(matrix) == 0:
            continue
        centres = starts + window_s / 2
        frames = np.interp(centres, seq.times, seq.frames).round().astype(np.int64)
        outputs.append(decode_scores(checkpoint["task"], model.predict(matrix)))
        steps.append(StepSequence(seq.video, frames, centres, np.zeros((len(centres), 1), np.float32)))
    return prediction_table(steps, outputs, columns)
