"""PDEM embeddings: audeering's wav2vec2-large-robust-12-ft-emotion-msp-dim through transformers, pooled to
label-rate steps inside the audio windows laid on voiced segments.

The architecture comes from the release's config.json (Wav2Vec2Model: 12 layers, hidden 1024), the input
normalisation from its preprocessor_config.json, the weights from the release's safetensors file (keys
`wav2vec2.*` of the backbone; the `classifier.*` regression head is not used for embeddings).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from avaffect.windows import slot_of_steps

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


def _batches(windows: Sequence[tuple[int, int]], batch_size: int) -> Iterator[list[int]]:
    """Indices of windows of equal sample length, `batch_size` at a time, so no batch needs padding."""
    by_length: dict[int, list[int]] = {}
    for index, (start, end) in enumerate(windows):
        by_length.setdefault(end - start, []).append(index)
    for indices in by_length.values():
        for first in range(0, len(indices), batch_size):
            yield indices[first:first + batch_size]


def pool_steps(hidden: np.ndarray, stride_s: float, n_steps: int, step_s: float) -> np.ndarray:
    """(n_steps, hidden) means of the frames (one every `stride_s` from the window's start) that start in
    each step [k step_s, (k + 1) step_s); a step without a frame is NaN."""
    step = slot_of_steps(np.arange(len(hidden)) * stride_s, 0.0, step_s)
    out = np.full((n_steps, hidden.shape[1]), np.nan, np.float32)
    for k in range(n_steps):
        chosen = hidden[step == k]
        if len(chosen):
            out[k] = chosen.mean(axis=0)
    return out


def pdem_window_embeddings(model: torch.nn.Module, extractor, samples: np.ndarray, sample_rate: int,
                           windows: Sequence[tuple[float, float]], rate_hz: float, batch_size: int,
                           device: str) -> np.ndarray:
    """(sum of window steps, hidden) last-layer PDEM states pooled to `rate_hz` steps, window after window.

    Each window is one model input, normalised on its own as the release's feature extractor does; windows
    run `batch_size` at a time, so memory depends on the batch, not on the recording's length.
    """
    if sample_rate != extractor.sampling_rate:
        raise ValueError(f"PDEM needs audio at {extractor.sampling_rate} Hz, got {sample_rate} Hz "
                         "(config audio.sample_rate)")
    spans = [(int(round(start * sample_rate)), int(round(end * sample_rate))) for start, end in windows]
    n_steps = [int(round((end - start) * rate_hz)) for start, end in windows]
    stride_s = frame_stride(model) / sample_rate
    pooled: list[np.ndarray | None] = [None] * len(windows)
    model = model.to(device)
    with torch.inference_mode():
        for batch in _batches(spans, batch_size):
            inputs = extractor([samples[spans[i][0]:spans[i][1]] for i in batch], sampling_rate=sample_rate,
                               return_tensors="pt")
            hidden = model(inputs.input_values.to(device)).last_hidden_state.float().cpu().numpy()
            for row, i in enumerate(batch):
                pooled[i] = pool_steps(hidden[row], stride_s, n_steps[i], 1.0 / rate_hz)
    if not pooled:
        return np.zeros((0, model.config.hidden_size), np.float32)
    return np.concatenate(pooled)
