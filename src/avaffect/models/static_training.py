"""Fine-tuning a static FER model on the labelled frames of the training videos, keeping the epoch best on
validation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from avaffect.core.checkpoints import state_copy
from avaffect.core.progress import EVERY_UNIT, Progress
from avaffect.corpus.metrics import PRIMARY_METRIC, expr_scores, va_scores
from avaffect.corpus.tasks import EXPR_CLASSES
from avaffect.face.augment import CropAugmentation, augment_crops
from avaffect.face.backbones import (
    HEAD_OUTPUTS,
    Preprocessing,
    StaticFER,
    channel_stats,
    crop_embedder,
    face_crop,
    normalised,
)
from avaffect.face.boxes import FaceBox, on_tracked_faces
from avaffect.models.selection import is_better
from avaffect.models.sequences import valid_labels
from avaffect.models.training import class_weights_of, masked_loss


@dataclass(frozen=True)
class StaticTrainSettings:
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    seed: int
    loss: str  # VA: mse | ccc (1 - CCC per dimension); EXPR is always cross-entropy
    augmentation: CropAugmentation  # of the training batches only


def _batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def static_scores(task: str, labels: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    if task == "va":
        return va_scores(labels, outputs)
    return expr_scores(labels, outputs.argmax(axis=1))


def evaluate(model: StaticFER, crops: np.ndarray, prep: Preprocessing, batch_size: int, device: str
             ) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings (N, embedding_dim), head outputs (N, n_outputs)) of an array of crops."""
    embed = crop_embedder(model, prep, device)
    found = [embed(crops[index.numpy()]) for index in _batches(len(crops), batch_size)]
    n_out = len(HEAD_OUTPUTS[model.config.task])
    if not found:
        return np.zeros((0, model.config.embedding_dim), np.float32), np.zeros((0, n_out), np.float32)
    return np.concatenate([e for e, _ in found]), np.concatenate([o for _, o in found])


def fine_tune(model: StaticFER, prep: Preprocessing, train_crops: np.ndarray, train_labels: np.ndarray,
              validation_crops: np.ndarray, validation_labels: np.ndarray, settings: StaticTrainSettings, device: str,
              log) -> dict:
    """Fine-tune the whole model on labelled crops, each training batch freshly augmented; returns the
    checkpoint of the epoch that scores best on validation (macro F1 for EXPR, mean CCC for VA)."""
    task = model.config.task
    for name, labels in (("train", train_labels), ("validation", validation_labels)):
        if not valid_labels(task, labels).any():
            raise ValueError(f"static {task} model: no valid {name} labels among the sampled frames")
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    weights = (torch.as_tensor(class_weights_of(train_labels, len(EXPR_CLASSES)), dtype=torch.float32,
                               device=device) if task == "expr" else None)
    dtype = torch.float32 if task == "va" else torch.long
    targets = torch.as_tensor(np.nan_to_num(train_labels) if task == "va" else train_labels, dtype=dtype)
    mask = torch.from_numpy(valid_labels(task, train_labels))
    best: dict = {}
    history: list[dict] = []
    epochs = Progress("fine-tuning", "epoch", settings.epochs, log, EVERY_UNIT)
    for epoch in range(1, settings.epochs + 1):
        model.train()
        total = 0.0
        for index in _batches(len(train_crops), settings.batch_size, generator):
            # Batch norm needs two samples to train on; a last batch of one is left out.
            if len(index) < 2 or not mask[index].any():
                continue
            batch = torch.from_numpy(np.ascontiguousarray(train_crops[index.numpy()])).permute(0, 3, 1, 2)
            batch = augment_crops(batch, settings.augmentation, generator).permute(0, 2, 3, 1)
            _, raw = model(normalised(batch, *channel_stats(prep)).to(device))
            loss = masked_loss(task, settings.loss, raw, targets[index].to(device), mask[index].to(device), weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
        _, outputs = evaluate(model, validation_crops, prep, settings.batch_size, device)
        valid = valid_labels(task, validation_labels)
        scores = static_scores(task, validation_labels[valid], outputs[valid])
        history.append({"epoch": epoch, "train_loss": total / len(train_crops)} | scores)
        log(f"epoch {epoch}: train loss {total / len(train_crops):.4f}, validation {scores}")
        epochs.advance()
        if not best or is_better(scores[PRIMARY_METRIC[task]], best["scores"][PRIMARY_METRIC[task]]):
            best = {"epoch": epoch, "scores": scores, "state_dict": state_copy(model)}
    return best | {"config": asdict(model.config), "preprocessing": asdict(prep), "history": history}


def labelled_frames(labels: np.ndarray, task: str, has_face: dict[int, bool], limit: int | Literal["all"]
                    ) -> np.ndarray:
    """Up to `limit` (or all) 1-based frame numbers with a valid label and a tracked face, evenly spaced in
    time."""
    frames = np.flatnonzero(valid_labels(task, labels)) + 1
    frames = np.array([f for f in frames if has_face.get(int(f), False)], np.int64)
    if limit == "all" or len(frames) <= limit:
        return frames
    return frames[np.linspace(0, len(frames) - 1, limit).round().astype(np.int64)]


def labelled_crops(frames: Iterable[tuple[int, np.ndarray]], boxes: dict[int, FaceBox], labels: np.ndarray,
                   margin_px: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(crops (N, size, size, 3) uint8, their labels) of the decoded frames that have a tracked face;
    `labels` holds one label per frame of the video (frame k at index k - 1)."""
    found = list(on_tracked_faces(frames, boxes, lambda image, box: face_crop(image, box, margin_px, size)))
    crops = np.stack([crop for _, crop in found]) if found else np.zeros((0, size, size, 3), np.uint8)
    return crops, labels[[number - 1 for number, _ in found]]
