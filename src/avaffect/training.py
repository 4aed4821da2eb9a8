"""Label-rate sequences from embeddings and labels, training with model selection, and prediction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from avaffect.corpus import (
    EXPR_CLASSES,
    EXPR_INVALID,
    VA_DIMENSIONS,
    align_to_frames,
    annotation_path,
    read_annotation,
    video_of,
)
from avaffect.metrics import expr_scores, va_scores
from avaffect.models import TemporalTransformer, TransformerConfig, output_activation
from avaffect.tables import read_parquet
from avaffect.windows import sliding_starts

TASK_OUTPUTS = {"va": len(VA_DIMENSIONS), "expr": len(EXPR_CLASSES)}
SELECTION_METRIC = {"va": "p_va", "expr": "macro_f1"}


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


@dataclass(frozen=True)
class Normalizer:
    """Train-set z-scoring; steps without an embedding become zeros and a presence flag says so."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, sequences: Sequence[StepSequence]) -> Normalizer:
        stacked = np.concatenate([s.features[s.present] for s in sequences])
        return cls(stacked.mean(axis=0), np.maximum(stacked.std(axis=0), 1e-6))

    def __call__(self, features: np.ndarray) -> np.ndarray:
        present = ~np.isnan(features).any(axis=1)
        scaled = np.where(present[:, None], (features - self.mean) / self.std, 0.0)
        return np.concatenate([scaled, present[:, None]], axis=1).astype(np.float32)


def valid_labels(task: str, labels: np.ndarray) -> np.ndarray:
    return ~np.isnan(labels).any(axis=-1) if task == "va" else labels != EXPR_INVALID


@dataclass(frozen=True)
class Windows:
    inputs: torch.Tensor  # (N, L, F + 1)
    targets: torch.Tensor  # (N, L, 2) float or (N, L) long
    mask: torch.Tensor  # (N, L) bool: a valid label on a present step
    padding: torch.Tensor  # (N, L) bool: True where the window runs past the sequence


def make_windows(sequences: Sequence[StepSequence], normalizer: Normalizer, task: str, length: int, hop: int
                 ) -> Windows:
    inputs, targets, mask, padding = [], [], [], []
    n_in = len(normalizer.mean) + 1
    for seq in sequences:
        x = normalizer(seq.features)
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
    """Inverse class frequency, mean 1 over the classes that occur; absent classes weigh 0."""
    labels = np.concatenate([s.labels[valid_labels("expr", s.labels)] for s in sequences])
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return weights / weights[counts > 0].mean()


def masked_loss(task: str, raw: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                weights: torch.Tensor | None) -> torch.Tensor:
    if task == "va":
        return ((torch.tanh(raw) - targets) ** 2).mean(dim=-1)[mask].mean()
    return nn.functional.cross_entropy(raw[mask], targets[mask], weight=weights)


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


def score(task: str, sequences: Sequence[StepSequence], predictions: Sequence[np.ndarray]) -> dict[str, float]:
    truth = np.concatenate([s.labels[s.present] for s in sequences])
    pred = np.concatenate([p[s.present] for s, p in zip(sequences, predictions, strict=True)])
    if task == "va":
        return va_scores(truth, pred)
    return expr_scores(truth, pred.argmax(axis=1))


def predict(model: TemporalTransformer, normalizer: Normalizer, task: str, sequences: Sequence[StepSequence],
            window: int, hop: int, device: str) -> list[np.ndarray]:
    """Per-step predictions of every sequence; overlapping windows are averaged."""
    model.eval()
    out = []
    with torch.inference_mode():
        for seq in sequences:
            x = torch.from_numpy(normalizer(seq.features)).to(device)
            total = torch.zeros(len(x), model.config.n_outputs, device=device)
            count = torch.zeros(len(x), 1, device=device)
            for start in sliding_starts(len(x), window, hop):
                stop = min(start + window, len(x))
                total[start:stop] += output_activation(task, model(x[None, start:stop]))[0]
                count[start:stop] += 1
            out.append((total / count).cpu().numpy())
    return out


def train(task: str, train_set: Sequence[StepSequence], validation_set: Sequence[StepSequence],
          architecture: dict, settings: TrainSettings, device: str, log) -> tuple[dict, list[dict]]:
    """Train a transformer; keep the epoch with the best validation score. Returns checkpoint and history."""
    torch.manual_seed(settings.seed)
    normalizer = Normalizer.fit(train_set)
    config = TransformerConfig(n_features=len(normalizer.mean) + 1, n_outputs=TASK_OUTPUTS[task], **architecture)
    model = TemporalTransformer(config).to(device)
    data = make_windows(train_set, normalizer, task, settings.window, settings.hop)
    weights = None
    if task == "expr":
        weights = torch.tensor(class_weights(train_set, TASK_OUTPUTS[task]), dtype=torch.float32, device=device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    use_amp = device.startswith("cuda")
    generator = torch.Generator().manual_seed(settings.seed)
    metric = SELECTION_METRIC[task]
    best: dict | None = None
    history: list[dict] = []
    stale = 0
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
            loss = masked_loss(task, raw.float(), data.targets[batch].to(device), mask, weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        scores = score(task, validation_set,
                       predict(model, normalizer, task, validation_set, settings.window, settings.hop, device))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), **scores})
        log(f"epoch {epoch}: loss {np.mean(losses):.4f} validation {metric} {scores[metric]:.4f}")
        if best is None or scores[metric] > best["scores"][metric]:
            state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            best = {"task": task, "config": config.to_dict(), "state_dict": state, "epoch": epoch,
                    "scores": {k: float(v) for k, v in scores.items()},
                    "normalizer": {"mean": torch.from_numpy(normalizer.mean.astype(np.float32)),
                                   "std": torch.from_numpy(normalizer.std.astype(np.float32))},
                    "window": settings.window, "hop": settings.hop}
            stale = 0
        else:
            stale += 1
            if stale >= settings.patience:
                log(f"early stop after {epoch} epochs: best epoch {best['epoch']}")
                break
    return best, history


def load_checkpoint(checkpoint: dict, device: str) -> tuple[TemporalTransformer, Normalizer]:
    model = TemporalTransformer(TransformerConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    norm = checkpoint["normalizer"]
    return model.to(device), Normalizer(norm["mean"].numpy(), norm["std"].numpy())


def video_sequences(embedding_file: Path, video: str, modality: str) -> list[StepSequence]:
    """Face embeddings form one sequence per video; audio embeddings one per voiced window."""
    table = read_parquet(embedding_file)
    if table.empty:
        return []
    return sequences_from_table(table, video, "window" if modality == "audio" else None)


def labelled_sequences(samples: Sequence[str], task: str, split: str, corpus: Path, modality: str,
                       embeddings: dict[str, Path], probes: dict[str, dict], log) -> list[StepSequence]:
    """Sequences of the samples with their labels; annotation/video length mismatches are logged."""
    out = []
    for sample in samples:
        video = video_of(sample)
        n_frames = probes[video]["n_frames"]
        path = annotation_path(corpus, task, split, sample)
        labels = read_annotation(path, task)
        if len(labels) != n_frames:
            log(f"{path}: {len(labels)} label lines for {n_frames} decoded frames; frame k takes line k, "
                "frames without a line are invalid")
        aligned = align_to_frames(labels, n_frames)
        out += [attach_labels(s, aligned) for s in video_sequences(embeddings[video], video, modality)]
    return out


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
