"""Training the temporal models on windows of label-rate sequences, with early stopping on the task
metric, and their prediction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from avaffect.core.checkpoints import state_copy
from avaffect.core.progress import EVERY_UNIT, Progress
from avaffect.corpus.metrics import PRIMARY_METRIC, expr_scores, va_scores
from avaffect.corpus.tasks import output_activation
from avaffect.media.timeline import covering_hop, interpolate_columns, sliding_starts, window_centres
from avaffect.models.families import ModelConfig, build_model
from avaffect.models.normalization import MIN_SCALE, Normalizer
from avaffect.models.selection import is_better
from avaffect.models.sequences import (
    TASK_OUTPUTS,
    StepSequence,
    require_finite_predictions,
    valid_labels,
    window_label,
)


@dataclass(frozen=True)
class Windows:
    inputs: torch.Tensor  # (N, L, F + 1)
    targets: torch.Tensor  # (N, L, 2) float or (N, L) long; per window (`window_targets`): (N, 2) or (N,)
    mask: torch.Tensor  # (N, L) bool: a valid label on a present step; per window: (N,), the window has one
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


def window_targets(task: str, windows: Windows) -> Windows:
    """The windows with one target each, for a per_window model: `window_label` of the steps the per-step loss
    would count (a valid label on a present step), so the VA mean and the EXPR majority of those labels. A window
    without such a step is masked out."""
    step_targets, step_mask = windows.targets.numpy(), windows.mask.numpy()
    labels = np.stack([window_label(task, t[m]) for t, m in zip(step_targets, step_mask, strict=True)])
    mask = valid_labels(task, labels)
    targets = np.nan_to_num(labels, nan=0.0) if task == "va" else np.where(mask, labels, 0)
    return Windows(windows.inputs, torch.as_tensor(targets, dtype=windows.targets.dtype), torch.from_numpy(mask),
                   windows.padding)


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


def per_step_outputs(model: nn.Module, task: str, x: torch.Tensor, window: int, hop: int) -> torch.Tensor:
    """A per_step model's outputs at every step of one sequence: the mean over the windows that hold the step."""
    total = torch.zeros(len(x), model.config.n_outputs, device=x.device)
    count = torch.zeros(len(x), 1, device=x.device)
    for start in sliding_starts(len(x), window, hop):
        stop = min(start + window, len(x))
        total[start:stop] += output_activation(task, model(x[None, start:stop]))[0]
        count[start:stop] += 1
    return total / count


def per_window_outputs(model: nn.Module, task: str, x: torch.Tensor, seq: StepSequence, window: int, hop: int
                       ) -> np.ndarray:
    """A per_window model's outputs at every step of one sequence: each window's output is placed at the window's
    centre, and the steps take the linear interpolation between centres (the first and last centre's value
    beyond them).

    Only windows that hold a present step (an embedding) place a value: one seeing nothing but missing faces would
    pull its neighbours' steps towards a guess. A sequence without any embedding has no row in the prediction
    table, so there any window will do.
    """
    starts = sliding_starts(len(x), window, hop)
    outputs = torch.cat([output_activation(task, model(x[None, start:start + window])) for start in starts])
    seen = np.array([seq.present[start:start + window].any() for start in starts])
    placed = seen if seen.any() else np.ones_like(seen)
    centres = window_centres(seq.times, starts, window)
    return interpolate_columns(centres[placed], outputs.cpu().numpy()[placed], seq.times).astype(np.float32)


def predict(model: nn.Module, normalizer: Normalizer, task: str, sequences: Sequence[StepSequence],
            window: int, hop: int, device: str, *, what: str) -> list[np.ndarray]:
    """Per-step predictions of every sequence from windows every `hop` steps: per_step models average overlapping
    windows (`per_step_outputs`), per_window models interpolate between window centres (`per_window_outputs`).
    A NaN prediction is an error naming `what` (model, task, window) and the video."""
    model.eval()
    out = []
    with torch.inference_mode():
        for seq, inputs in zip(sequences, normalizer.transform(sequences), strict=True):
            x = torch.from_numpy(inputs).to(device)
            if model.config.output == "per_window":
                result = per_window_outputs(model, task, x, seq, window, hop)
            else:
                result = per_step_outputs(model, task, x, window, hop).cpu().numpy()
            require_finite_predictions(what, result, np.full(len(result), seq.video), seq.times)
            out.append(result)
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
        """Whether `epoch` scores better than every epoch before it (the caller keeps its weights). The first epoch
        is kept even with a NaN score, so that there is a checkpoint, until an epoch with a score comes."""
        if self.best_epoch is None or is_better(scores[self.metric], self.best_score):
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
          architecture: dict, settings: TrainSettings, device: str, log, *, what: str) -> tuple[dict, list[dict]]:
    """Train one model; keep the epoch with the best validation score. Returns checkpoint and history.

    Mixed precision (bfloat16) on CUDA; seeds fixed; early stopping after `patience` epochs without a
    better validation score. Windows come every `covering_hop` steps (logged when that is shorter than the
    settings' hop); a NaN validation prediction is an error naming `what` (model, task, window). A per_window
    model (`architecture["output"]`) learns one target per window (`window_targets`), and EXPR class weights
    come from those targets.
    """
    torch.manual_seed(settings.seed)
    normalizer = Normalizer.fit(train_set, settings.normalization)
    n_features = train_set[0].features.shape[1] + 1
    config = ModelConfig(family=family, n_features=n_features, n_outputs=TASK_OUTPUTS[task], **architecture)
    model = build_model(config).to(device)
    hop = covering_hop(settings.window, settings.hop)
    if hop != settings.hop:
        log(f"{what}: training.hop_s ({settings.hop} steps) is longer than the window ({settings.window} steps); "
            f"windows come every {hop} steps, so that every step is in one")
    data = make_windows(train_set, normalizer.transform(train_set), task, settings.window, hop)
    if config.output == "per_window":
        data = window_targets(task, data)
    weights = None
    if task == "expr":
        counted = class_weights(train_set, TASK_OUTPUTS[task]) if config.output == "per_step" else \
            class_weights_of(data.targets[data.mask].numpy(), TASK_OUTPUTS[task])
        weights = torch.tensor(counted, dtype=torch.float32, device=device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    use_amp = device.startswith("cuda")
    generator = torch.Generator().manual_seed(settings.seed)
    metric = PRIMARY_METRIC[task]
    stopping = EarlyStopping(metric, settings.patience)
    best: dict | None = None
    history: list[dict] = []
    epochs = Progress("training", "epoch", settings.epochs, log, EVERY_UNIT, upper_bound=True)
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
                       predict(model, normalizer, task, validation_set, settings.window, hop, device, what=what))
        history.append({"epoch": epoch, "loss": float(np.mean(losses)), **scores})
        log(f"epoch {epoch}: loss {np.mean(losses):.4f} validation {metric} {scores[metric]:.4f}")
        epochs.advance()
        if stopping.improved(epoch, scores):
            best = {"task": task, "config": config.to_dict(), "state_dict": state_copy(model), "epoch": epoch,
                    "scores": {k: float(v) for k, v in scores.items()}, "normalizer": normalizer.to_state(),
                    "window": settings.window, "hop": hop}
        elif stopping.exhausted(epoch, log):
            break
    epochs.finish()
    return best, history


def load_checkpoint(checkpoint: dict, device: str) -> tuple[nn.Module, Normalizer]:
    model = build_model(ModelConfig.from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    return model.to(device), Normalizer.from_state(checkpoint["normalizer"])
