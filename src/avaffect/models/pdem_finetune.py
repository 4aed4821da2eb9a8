"""End-to-end audio models: the PDEM backbone with its top transformer layers unfrozen, trained jointly with a
head of a model family on raw waveform windows (the SUN ABAW 2024 AudioModelV1 to V3).

The backbone's last `layers` transformer layers and the head (`families.build_model`: AudioModel for
audio_gru / audio_transformer, LinearHead for linear) train on the 4 s windows laid on the voiced segments of
the training videos, with the labels the audio models use (`window_step_labels`) and their losses
(`masked_loss`: 1 - CCC or MSE for VA, class-weighted, label-smoothed cross-entropy for EXPR). The head reads
the backbone's last states averaged over each label-rate step (`step_weights`), the steps the PDEM embeddings
have. Everything else keeps `requires_grad` off and stays in eval mode, so neither dropout nor LayerDrop nor
SpecAugment acts on the frozen part. The epoch that scores best on the validation windows is kept; its
checkpoint holds only what trained (the top layers and the head): the rest is the release's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from avaffect.audio.augment import WaveformAugmentation, augment_waveform
from avaffect.audio.pdem import frame_centres, length_batches, step_weights, top_layers, unfreeze_top_layers
from avaffect.core.checkpoints import state_copy
from avaffect.core.progress import EVERY_UNIT, Progress
from avaffect.corpus.metrics import PRIMARY_METRIC
from avaffect.corpus.tasks import EXPR_CLASSES, output_activation
from avaffect.media.timeline import audio_window_grid
from avaffect.models.families import ModelConfig, build_model
from avaffect.models.functionals import window_scores
from avaffect.models.sequences import TASK_OUTPUTS, valid_labels, window_step_labels
from avaffect.models.training import EarlyStopping, class_weights_of, masked_loss

END_TO_END_FAMILIES = ("audio_gru", "audio_transformer", "linear")


@dataclass(frozen=True)
class EndToEndSettings:
    layers: int  # last transformer layers trained
    epochs: int
    batch_size: int  # windows per step
    backbone_learning_rate: float
    head_learning_rate: float
    weight_decay: float
    patience: int  # epochs without a better validation score before stopping
    loss: str  # VA: ccc | mse
    label_smoothing: float  # EXPR cross-entropy
    seed: int
    gradient_checkpointing: bool = False  # recompute the trained layers' activations in the backward pass
    augmentation: WaveformAugmentation | None = None  # drawn afresh for every training window and epoch

    @classmethod
    def from_config(cls, layers: int, section: dict, loss: str, label_smoothing: float,
                    augmentation: dict) -> EndToEndSettings:
        """From config `end_to_end` (and the `augmentation` section when it says `augment`), the model's
        `finetune_layers` and `loss`, and `audio_model.label_smoothing`."""
        return cls(layers, section["epochs"], section["batch_size"], section["backbone_learning_rate"],
                   section["head_learning_rate"], section["weight_decay"], section["patience"], loss,
                   label_smoothing, section["seed"], section["gradient_checkpointing"],
                   WaveformAugmentation.from_config(augmentation) if section["augment"] else None)


@dataclass
class AudioWindows:
    """Audio windows (views into their recordings' samples) with their label-rate steps (1-based video
    frames, times in s) and, for training, the steps' labels: (steps, 2) float with NaN for VA, (steps,) int
    with the invalid class for EXPR."""

    audio: list[np.ndarray]
    frames: list[np.ndarray]
    times: list[np.ndarray]
    labels: list[np.ndarray] = field(default_factory=list)

    def __add__(self, other: AudioWindows) -> AudioWindows:
        return AudioWindows(self.audio + other.audio, self.frames + other.frames, self.times + other.times,
                            self.labels + other.labels)

    def __len__(self) -> int:
        return len(self.audio)


def recording_windows(samples: np.ndarray, sample_rate: int, voiced_s: list[tuple[float, float]], n_frames: int,
                      fps: float, rate_hz: float, window_s: float, step_s: float) -> AudioWindows:
    """The windows of one recording that the embedding jobs lay on its voiced segments (over the part both its
    audio and its `n_frames` video frames cover), with their steps."""
    duration = min(len(samples) / sample_rate, n_frames / fps)
    windows, steps = audio_window_grid(voiced_s, duration, n_frames, fps, rate_hz, window_s, step_s)
    out = AudioWindows([], [], [])
    for index, (start, end) in enumerate(windows):
        rows = steps["window"] == index
        out.audio.append(samples[int(round(start * sample_rate)):int(round(end * sample_rate))])
        out.frames.append(steps["frame"][rows])
        out.times.append(steps["time_s"][rows])
    return out


def labelled_windows(task: str, windows: AudioWindows, frame_labels: np.ndarray, fps: float, expr_label_s: float
                     ) -> AudioWindows:
    """The `windows` of a recording with their steps' labels (`window_step_labels`) from `frame_labels`, one per
    decoded video frame; a window without a valid label is left out."""
    out = AudioWindows([], [], [])
    for audio, frames, times in zip(windows.audio, windows.frames, windows.times, strict=True):
        labels = window_step_labels(frames, times, frame_labels, fps, expr_label_s)
        if valid_labels(task, labels).any():
            out += AudioWindows([audio], [frames], [times], [labels])
    return out


def head_config(family: str, task: str, hidden_size: int, architecture: dict) -> ModelConfig:
    """The head's ModelConfig: `family` over `hidden_size` step states (no presence flag: every step has
    audio), with the task's outputs."""
    if family not in END_TO_END_FAMILIES:
        raise ValueError(f"family '{family}' cannot train end to end (expected one of "
                         f"{', '.join(END_TO_END_FAMILIES)})")
    return ModelConfig(family=family, n_features=hidden_size, n_outputs=TASK_OUTPUTS[task], **architecture)


class EndToEndModel(nn.Module):
    """PDEM backbone, its last states averaged over each label-rate step, and the family's head.

    `train()` puts only the top `layers` transformer layers and the head in training mode: the frozen part
    of the backbone stays in eval mode."""

    def __init__(self, backbone: nn.Module, head: nn.Module, layers: int, rate_hz: float, sample_rate: int):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.layers = layers
        self.rate_hz = rate_hz
        self.sample_rate = sample_rate

    @property
    def top(self) -> nn.ModuleList:
        return top_layers(self.backbone, self.layers)

    def train(self, mode: bool = True) -> EndToEndModel:
        super().train(False)
        self.top.train(mode)
        self.head.train(mode)
        return self

    def forward(self, input_values: torch.Tensor, n_steps: int) -> torch.Tensor:
        """Raw outputs (B, n_steps, n_outputs) of normalised windows (B, samples) of equal length; bfloat16
        autocast on CUDA."""
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=input_values.is_cuda):
            hidden = self.backbone(input_values).last_hidden_state
            weights = step_weights(frame_centres(self.backbone, hidden.shape[1], self.sample_rate), n_steps,
                                   1.0 / self.rate_hz)
            return self.head(torch.from_numpy(weights).to(hidden) @ hidden).float()


def end_to_end_model(backbone: nn.Module, config: ModelConfig, layers: int, rate_hz: float, sample_rate: int,
                     seed: int) -> EndToEndModel:
    """The backbone (release weights loaded) with its last `layers` layers unfrozen and a head initialised from
    `seed`."""
    unfreeze_top_layers(backbone, layers)
    torch.manual_seed(seed)
    return EndToEndModel(backbone, build_model(config), layers, rate_hz, sample_rate).eval()


def checkpoint_of(model: EndToEndModel, task: str, window_s: float, step_s: float) -> dict:
    """What trained, and what prediction needs to lay the same windows: tensors and plain values only."""
    return {"task": task, "config": model.head.config.to_dict(), "finetune_layers": model.layers,
            "rate_hz": model.rate_hz, "sample_rate": model.sample_rate, "window_s": window_s, "step_s": step_s,
            "top_layers": state_copy(model.top), "head": state_copy(model.head)}


def load_end_to_end(checkpoint: dict, backbone: nn.Module) -> EndToEndModel:
    """A checkpoint of `checkpoint_of` on a backbone holding the release's weights, in eval mode."""
    model = end_to_end_model(backbone, ModelConfig.from_dict(checkpoint["config"]), checkpoint["finetune_layers"],
                             checkpoint["rate_hz"], checkpoint["sample_rate"], 0)
    model.top.load_state_dict(checkpoint["top_layers"])
    model.head.load_state_dict(checkpoint["head"])
    return model


def window_inputs(extractor, audio: Sequence[np.ndarray], sample_rate: int, device: str) -> torch.Tensor:
    """Windows of equal length as model inputs, each normalised on its own as the release's feature
    extractor does."""
    return extractor(list(audio), sampling_rate=sample_rate, return_tensors="pt").input_values.to(device)


def predict_windows(model: EndToEndModel, extractor, task: str, windows: AudioWindows, batch_size: int,
                    device: str) -> list[np.ndarray]:
    """Task outputs (steps, n_outputs) of every window, in eval mode."""
    model.eval()
    out: list[np.ndarray | None] = [None] * len(windows)
    with torch.inference_mode():
        for batch in length_batches([len(a) for a in windows.audio], batch_size):
            inputs = window_inputs(extractor, [windows.audio[i] for i in batch], model.sample_rate, device)
            raw = model(inputs, len(windows.times[batch[0]]))
            for row, i in enumerate(batch):
                out[i] = output_activation(task, raw[row]).cpu().numpy()
    return out


def validation_scores(task: str, windows: AudioWindows, outputs: Sequence[np.ndarray]) -> dict[str, float]:
    """Task scores over the valid steps of every window (a step inside two windows counts twice)."""
    labels = np.concatenate(windows.labels)
    valid = valid_labels(task, labels)
    return window_scores(task, labels[valid], np.concatenate(outputs)[valid])


def training_audio(audio: np.ndarray, augmentation: WaveformAugmentation | None, seed: int, epoch: int,
                   window: int) -> np.ndarray:
    """A training window's audio in an epoch: its own draw of the augmentations for every epoch and window
    (whatever the batch order), the same on a rerun."""
    if augmentation is None:
        return audio
    return augment_waveform(audio, augmentation, np.random.default_rng([seed, epoch, window]))


def batch_loss(task: str, settings: EndToEndSettings, raw: torch.Tensor, labels: np.ndarray,
               class_weights: torch.Tensor | None) -> torch.Tensor:
    """The loss of raw outputs (B, steps, n_outputs) against labels (B, steps[, 2]) on their valid steps:
    the settings' VA loss, or EXPR cross-entropy with `class_weights` and the settings' label smoothing."""
    valid = valid_labels(task, labels)
    targets = np.nan_to_num(labels) if task == "va" else np.where(valid, labels, 0)
    target_dtype = torch.float32 if task == "va" else torch.long
    return masked_loss(task, settings.loss, raw, torch.as_tensor(targets, dtype=target_dtype, device=raw.device),
                       torch.from_numpy(valid).to(raw.device), class_weights, settings.label_smoothing)


def train_end_to_end(model: EndToEndModel, extractor, task: str, train: AudioWindows, validation: AudioWindows,
                     settings: EndToEndSettings, device: str, log) -> dict:
    """Train the top layers and the head of `model` (`end_to_end_model`); on return `model` holds the epoch
    best on validation (the task's challenge score), in eval mode. Returns that epoch, its scores and the
    history.

    Mixed precision (bfloat16) on CUDA, and gradient checkpointing of the trained layers when the settings
    ask for it; seeds fixed; early stopping after `patience` epochs without a better validation score."""
    for name, windows in (("train", train), ("validation", validation)):
        if not len(windows):
            raise ValueError(f"end-to-end audio model for {task}: no {name} window has a valid label")
    if settings.gradient_checkpointing:
        # Not reentrant: the frozen layers' outputs, the top layers' inputs, do not require grad.
        model.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    generator = torch.Generator().manual_seed(settings.seed)
    model.to(device)
    optimiser = torch.optim.AdamW([{"params": model.top.parameters(), "lr": settings.backbone_learning_rate},
                                   {"params": model.head.parameters(), "lr": settings.head_learning_rate}],
                                  weight_decay=settings.weight_decay)
    weights = (torch.as_tensor(class_weights_of(np.concatenate(train.labels), len(EXPR_CLASSES)),
                               dtype=torch.float32, device=device) if task == "expr" else None)
    metric = PRIMARY_METRIC[task]
    stopping = EarlyStopping(metric, settings.patience)
    best: dict = {}
    history: list[dict] = []
    epochs = Progress("training", "epoch", settings.epochs, log, EVERY_UNIT, upper_bound=True)
    for epoch in range(1, settings.epochs + 1):
        model.train()
        losses = []
        for batch in length_batches([len(a) for a in train.audio], settings.batch_size, generator):
            audio = [training_audio(train.audio[i], settings.augmentation, settings.seed, epoch, i) for i in batch]
            labels = np.stack([train.labels[i] for i in batch])
            raw = model(window_inputs(extractor, audio, model.sample_rate, device), labels.shape[1])
            loss = batch_loss(task, settings, raw, labels, weights)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
        scores = validation_scores(task, validation, predict_windows(model, extractor, task, validation,
                                                                     settings.batch_size, device))
        history.append({"epoch": epoch, "loss": float(np.mean(losses))} | scores)
        log(f"epoch {epoch}: loss {np.mean(losses):.4f}, validation {metric} {scores[metric]:.4f}")
        epochs.advance()
        if stopping.improved(epoch, scores):
            best = {"epoch": epoch, "scores": scores, "top": state_copy(model.top), "head": state_copy(model.head)}
        elif stopping.exhausted(epoch, log):
            break
    epochs.finish()
    model.top.load_state_dict(best.pop("top"))
    model.head.load_state_dict(best.pop("head"))
    model.eval()
    return best | {"history": history}
