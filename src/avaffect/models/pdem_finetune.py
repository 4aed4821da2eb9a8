"""Fine-tuning the last transformer layers of the PDEM backbone on labelled audio windows.

The backbone's last `layers` transformer layers and a linear head over the label-rate steps train on raw
waveform windows laid on the voiced segments of the training videos, with the labels the audio models use
(`window_step_labels`) and the audio models' losses (`masked_loss`: 1 - CCC or MSE for VA, class-weighted,
label-smoothed cross-entropy for EXPR). Everything else keeps `requires_grad` off and stays in eval mode, so
neither dropout nor LayerDrop nor SpecAugment acts on the frozen part. The epoch that scores best on the
validation windows is kept; rule finetune_pdem saves its backbone in the release's format, which the PDEM
embedding jobs then load instead of the release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from avaffect.audio.augment import WaveformAugmentation, augment_waveform
from avaffect.audio.pdem import frame_centres, length_batches, step_weights, unfreeze_top_layers
from avaffect.core.checkpoints import state_copy
from avaffect.core.progress import EVERY_UNIT, Progress
from avaffect.corpus.metrics import PRIMARY_METRIC
from avaffect.corpus.tasks import EXPR_CLASSES, output_activation
from avaffect.media.timeline import audio_window_grid
from avaffect.models.functionals import window_scores
from avaffect.models.sequences import TASK_OUTPUTS, valid_labels, window_step_labels
from avaffect.models.training import EarlyStopping, class_weights_of, masked_loss


@dataclass(frozen=True)
class FinetuneSettings:
    layers: int  # last transformer layers trained
    epochs: int
    batch_size: int  # windows per step
    backbone_learning_rate: float
    head_learning_rate: float
    weight_decay: float
    patience: int  # epochs without a better validation score before stopping
    dropout: float  # before the head
    loss: str  # VA: ccc | mse
    label_smoothing: float  # EXPR cross-entropy
    seed: int
    augmentation: WaveformAugmentation | None = None  # drawn afresh for every training window and epoch

    @classmethod
    def from_config(cls, layers: int, section: dict, augmentation: dict) -> FinetuneSettings:
        """From config embeddings.pdem.finetune (and the `augmentation` section when it says `augment`)."""
        return cls(layers, section["epochs"], section["batch_size"], section["backbone_learning_rate"],
                   section["head_learning_rate"], section["weight_decay"], section["patience"], section["dropout"],
                   section["loss"], section["label_smoothing"], section["seed"],
                   WaveformAugmentation.from_config(augmentation) if section["augment"] else None)


@dataclass
class LabelledWindows:
    """Audio windows (views into their recordings' samples) and the labels of their label-rate steps:
    (steps, 2) float with NaN for VA, (steps,) int with the invalid class for EXPR."""

    audio: list[np.ndarray]
    labels: list[np.ndarray]

    def __add__(self, other: LabelledWindows) -> LabelledWindows:
        return LabelledWindows(self.audio + other.audio, self.labels + other.labels)

    def __len__(self) -> int:
        return len(self.audio)


def labelled_windows(task: str, samples: np.ndarray, sample_rate: int, voiced_s: list[tuple[float, float]],
                     frame_labels: np.ndarray, fps: float, rate_hz: float, window_s: float, step_s: float,
                     expr_label_s: float) -> LabelledWindows:
    """The windows of one recording that the embedding jobs lay on its voiced segments (over the part both
    its audio and its video cover), each with its steps' labels; a window without a valid label is left out.
    `frame_labels` holds one label per decoded video frame."""
    n_frames = len(frame_labels)
    duration = min(len(samples) / sample_rate, n_frames / fps)
    windows, steps = audio_window_grid(voiced_s, duration, n_frames, fps, rate_hz, window_s, step_s)
    out = LabelledWindows([], [])
    for index, (start, end) in enumerate(windows):
        rows = steps["window"] == index
        labels = window_step_labels(steps["frame"][rows], steps["time_s"][rows], frame_labels, fps, expr_label_s)
        if valid_labels(task, labels).any():
            out.audio.append(samples[int(round(start * sample_rate)):int(round(end * sample_rate))])
            out.labels.append(labels)
    return out


class StepHead(nn.Module):
    """Dropout and a linear layer on the backbone's states averaged over each label-rate step."""

    def __init__(self, hidden_size: int, n_outputs: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, n_outputs)

    @classmethod
    def for_task(cls, model: nn.Module, task: str, dropout: float) -> StepHead:
        return cls(model.config.hidden_size, TASK_OUTPUTS[task], dropout)

    def forward(self, hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Raw outputs (B, steps, n_outputs) from states (B, frames, hidden) and `step_weights` (steps, frames)."""
        return self.linear(self.dropout(weights.to(hidden) @ hidden))


def step_outputs(model: nn.Module, head: StepHead, extractor, audio: Sequence[np.ndarray], sample_rate: int,
                 n_steps: int, rate_hz: float, device: str) -> torch.Tensor:
    """Raw head outputs (B, n_steps, n_outputs) of windows of equal length, each normalised on its own as
    the release's feature extractor does."""
    inputs = extractor(list(audio), sampling_rate=sample_rate, return_tensors="pt").input_values.to(device)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        hidden = model(inputs).last_hidden_state
        weights = step_weights(frame_centres(model, hidden.shape[1], sample_rate), n_steps, 1.0 / rate_hz)
        return head(hidden, torch.from_numpy(weights)).float()


def predict_windows(model: nn.Module, head: StepHead, extractor, task: str, windows: LabelledWindows,
                    sample_rate: int, rate_hz: float, batch_size: int, device: str) -> list[np.ndarray]:
    """Task outputs (steps, n_outputs) of every window, in eval mode."""
    model.eval()
    head.eval()
    out: list[np.ndarray | None] = [None] * len(windows)
    with torch.inference_mode():
        for batch in length_batches([len(a) for a in windows.audio], batch_size):
            raw = step_outputs(model, head, extractor, [windows.audio[i] for i in batch], sample_rate,
                               len(windows.labels[batch[0]]), rate_hz, device)
            for row, i in enumerate(batch):
                out[i] = output_activation(task, raw[row]).cpu().numpy()
    return out


def validation_scores(task: str, windows: LabelledWindows, outputs: Sequence[np.ndarray]) -> dict[str, float]:
    """Task scores over the valid steps of every window (a step inside two windows counts twice)."""
    labels = np.concatenate(windows.labels)
    valid = valid_labels(task, labels)
    return window_scores(task, labels[valid], np.concatenate(outputs)[valid])


def initial_head(model: nn.Module, task: str, settings: FinetuneSettings) -> StepHead:
    """The head before training, initialised from the settings' seed."""
    torch.manual_seed(settings.seed)
    return StepHead.for_task(model, task, settings.dropout)


def finetune_pdem(model: nn.Module, extractor, task: str, train: LabelledWindows, validation: LabelledWindows,
                  settings: FinetuneSettings, rate_hz: float, device: str, log) -> dict:
    """Train the last `settings.layers` layers of `model` and an `initial_head`; on return `model` holds the
    epoch best on validation (the task's challenge score). Returns that epoch, its scores, the trained head
    and the history.

    Mixed precision (bfloat16) on CUDA; seeds fixed; early stopping after `patience` epochs without a better
    validation score."""
    for name, windows in (("train", train), ("validation", validation)):
        if not len(windows):
            raise ValueError(f"PDEM fine-tuning for {task}: no {name} window has a valid label")
    head = initial_head(model, task, settings)
    generator = torch.Generator().manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    sample_rate = extractor.sampling_rate
    top = unfreeze_top_layers(model, settings.layers)
    model.to(device)
    head.to(device)
    optimiser = torch.optim.AdamW([{"params": top.parameters(), "lr": settings.backbone_learning_rate},
                                   {"params": head.parameters(), "lr": settings.head_learning_rate}],
                                  weight_decay=settings.weight_decay)
    weights = (torch.as_tensor(class_weights_of(np.concatenate(train.labels), len(EXPR_CLASSES)),
                               dtype=torch.float32, device=device) if task == "expr" else None)
    target_dtype = torch.float32 if task == "va" else torch.long
    metric = PRIMARY_METRIC[task]
    stopping = EarlyStopping(metric, settings.patience)
    best: dict = {}
    history: list[dict] = []
    epochs = Progress("fine-tuning", "epoch", settings.epochs, log, EVERY_UNIT, upper_bound=True)
    for epoch in range(1, settings.epochs + 1):
        model.eval()
        top.train()
        head.train()
        losses = []
        for batch in length_batches([len(a) for a in train.audio], settings.batch_size, generator):
            audio = [train.audio[i] for i in batch]
            if settings.augmentation is not None:
                audio = [augment_waveform(a, settings.augmentation, rng) for a in audio]
            labels = np.stack([train.labels[i] for i in batch])
            valid = valid_labels(task, labels)
            targets = np.nan_to_num(labels) if task == "va" else np.where(valid, labels, 0)
            raw = step_outputs(model, head, extractor, audio, sample_rate, labels.shape[1], rate_hz, device)
            loss = masked_loss(task, settings.loss, raw, torch.as_tensor(targets, dtype=target_dtype, device=device),
                               torch.from_numpy(valid).to(device), weights, settings.label_smoothing)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        scores = validation_scores(task, validation, predict_windows(model, head, extractor, task, validation,
                                                                     sample_rate, rate_hz, settings.batch_size, device))
        history.append({"epoch": epoch, "loss": float(np.mean(losses))} | scores)
        log(f"epoch {epoch}: loss {np.mean(losses):.4f}, validation {metric} {scores[metric]:.4f}")
        epochs.advance()
        if stopping.improved(epoch, scores):
            best = {"epoch": epoch, "scores": scores, "top": state_copy(top), "head": state_copy(head)}
        elif stopping.exhausted(epoch, log):
            break
    epochs.finish()
    top.load_state_dict(best.pop("top"))
    head.load_state_dict(best.pop("head"))
    model.eval()
    head.eval()
    return best | {"head": head, "history": history}

