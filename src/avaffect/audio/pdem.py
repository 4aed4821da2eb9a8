"""PDEM embeddings: audeering's wav2vec2-large-robust-12-ft-emotion-msp-dim through transformers, pooled to
label-rate steps inside the audio windows laid on voiced segments.

The architecture comes from the release's config.json (Wav2Vec2Model: 12 layers, hidden 1024), the input
normalisation from its preprocessor_config.json, the weights from the release's safetensors file (keys
`wav2vec2.*` of the backbone; the `classifier.*` regression head is not used for embeddings).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from avaffect.core.files import atomic_write
from avaffect.media.timeline import slot_of_steps

BACKBONE_PREFIX = "wav2vec2."
HEAD_PREFIX = "classifier."
TRAINING_ONLY = ("masked_spec_embed",)
"""Backbone parameters used only by SpecAugment in training; a release may leave them out."""


class PdemError(RuntimeError):
    """A PDEM weights file that does not fit the configured architecture; the message names the file."""


def build_pdem(config_dir: Path):
    """(Wav2Vec2Model with freshly initialised weights in eval mode, its Wav2Vec2FeatureExtractor) from the
    release's config.json and preprocessor_config.json in `config_dir`."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config.from_pretrained(config_dir)
    # Errors about the architecture name the file it came from.
    config.name_or_path = str(Path(config_dir) / "config.json")
    model = Wav2Vec2Model(config).eval()
    return model, Wav2Vec2FeatureExtractor.from_pretrained(config_dir)


def load_pdem_weights(model: torch.nn.Module, weights: Path) -> None:
    """Load the backbone of a PDEM release file into `model`; any missing or foreign tensor is an error."""
    from safetensors.torch import load_file

    state = load_file(str(weights))
    backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items() if k.startswith(BACKBONE_PREFIX)}
    foreign = [k for k in state if not k.startswith((BACKBONE_PREFIX, HEAD_PREFIX))]
    missing, unexpected = model.load_state_dict(backbone, strict=False)
    missing = [k for k in missing if k not in TRAINING_ONLY]
    if missing or unexpected or foreign:
        raise PdemError(f"{weights}: not a PDEM release for this config: missing {missing[:5]}, unexpected "
                        f"{(unexpected + foreign)[:5]} ({len(missing)} missing, "
                        f"{len(unexpected) + len(foreign)} unexpected tensors)")


def frame_stride(model: torch.nn.Module) -> int:
    """Input samples per output frame of the convolutional feature encoder (320: 20 ms at 16 kHz)."""
    return int(np.prod(model.config.conv_stride))


def length_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None
                   ) -> list[list[int]]:
    """Indices of windows of equal sample length, `batch_size` at a time, so no batch needs padding; in
    order, or shuffled (windows and batches) by `generator`."""
    order = range(len(lengths)) if generator is None else torch.randperm(len(lengths), generator=generator).tolist()
    by_length: dict[int, list[int]] = {}
    for index in order:
        by_length.setdefault(lengths[index], []).append(index)
    batches = [indices[first:first + batch_size] for indices in by_length.values()
               for first in range(0, len(indices), batch_size)]
    if generator is None:
        return batches
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def frame_centres(model: torch.nn.Module, n_frames: int, sample_rate: int) -> np.ndarray:
    """Times (s, from the input's start) of the centres of the first `n_frames` output frames: frame i of the
    convolutional feature encoder sees samples [i stride, i stride + field) (stride 320, field 400: 20 ms
    every 20 ms, centred 12.5 ms after its start at 16 kHz)."""
    kernels, strides = model.config.conv_kernel, model.config.conv_stride
    field = 1 + sum((kernel - 1) * int(np.prod(strides[:layer])) for layer, kernel in enumerate(kernels))
    return (np.arange(n_frames) * frame_stride(model) + field / 2) / sample_rate


def step_weights(frame_times_s: np.ndarray, n_steps: int, step_s: float) -> np.ndarray:
    """(n_steps, frames) weights that average the frames centred (`frame_times_s`, from the window's start)
    within half a step of each step's time k step_s; a step without a frame has a row of zeros.

    A step's time is its stamp in the embedding table and the time of its label, and the log-mel path
    centres its statistics there too: frames taken from the step's time on would hold audio half a step
    (0.1 s at 5 Hz) later than its stamp. The window's first step gets only its later half, as the window's
    input holds no audio before its start."""
    step = slot_of_steps(np.asarray(frame_times_s) + step_s / 2, 0.0, step_s)
    member = (step[None, :] == np.arange(n_steps)[:, None]).astype(np.float32)
    return member / np.maximum(member.sum(axis=1, keepdims=True), 1.0)


def pool_steps(hidden: np.ndarray, frame_times_s: np.ndarray, n_steps: int, step_s: float) -> np.ndarray:
    """(n_steps, hidden) means of the frames centred within half a step of each step's time (`step_weights`);
    a step without a frame is NaN."""
    weights = step_weights(frame_times_s, n_steps, step_s)
    out = (weights @ hidden).astype(np.float32)
    out[weights.sum(axis=1) == 0] = np.nan
    return out


def top_layers(model: torch.nn.Module, layers: int) -> torch.nn.ModuleList:
    """The last `layers` transformer layers of the backbone; more than it has is a config error."""
    total = model.config.num_hidden_layers
    if not 1 <= layers <= total:
        raise PdemError(f"config models: finetune_layers is {layers}, but the PDEM backbone of "
                        f"{model.config.name_or_path} has {total} transformer layers: choose 1 to {total}")
    return model.encoder.layers[total - layers:]


def unfreeze_top_layers(model: torch.nn.Module, layers: int) -> torch.nn.ModuleList:
    """Freeze the whole backbone but its last `layers` transformer layers (`top_layers`), which it returns."""
    top = top_layers(model, layers)
    model.requires_grad_(False)
    top.requires_grad_(True)
    return top


def save_pdem_weights(model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """The backbone as a release file (keys `wav2vec2.*`), which `load_pdem_weights` reads; atomic."""
    from safetensors.torch import save

    state = {BACKBONE_PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Not save_file: it creates the file readable by its owner only, unlike every other result.
    data = save(state, metadata=metadata)
    atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def pdem_window_embeddings(model: torch.nn.Module, extractor, samples: np.ndarray, sample_rate: int,
                           windows: Sequence[tuple[float, float]], rate_hz: float, batch_size: int,
                           device: str, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """(sum of window steps, hidden) last-layer PDEM states pooled to `rate_hz` steps, window after window.

    Each window is one model input, normalised on its own as the release's feature extractor does; windows
    run `batch_size` at a time, so memory depends on the batch, not on the recording's length. `progress` is
    told how many windows each batch has done.
    """
    if sample_rate != extractor.sampling_rate:
        raise ValueError(f"PDEM needs audio at {extractor.sampling_rate} Hz, got {sample_rate} Hz "
                         "(config audio.sample_rate)")
    spans = [(int(round(start * sample_rate)), int(round(end * sample_rate))) for start, end in windows]
    n_steps = [int(round((end - start) * rate_hz)) for start, end in windows]
    pooled: list[np.ndarray | None] = [None] * len(windows)
    model = model.to(device)
    with torch.inference_mode():
        for batch in length_batches([end - start for start, end in spans], batch_size):
            inputs = extractor([samples[spans[i][0]:spans[i][1]] for i in batch], sampling_rate=sample_rate,
                               return_tensors="pt")
            hidden = model(inputs.input_values.to(device)).last_hidden_state.float().cpu().numpy()
            centres = frame_centres(model, hidden.shape[1], sample_rate)
            for row, i in enumerate(batch):
                pooled[i] = pool_steps(hidden[row], centres, n_steps[i], 1.0 / rate_hz)
            if progress is not None:
                progress(len(batch))
    if not pooled:
        return np.zeros((0, model.config.hidden_size), np.float32)
    return np.concatenate(pooled)
