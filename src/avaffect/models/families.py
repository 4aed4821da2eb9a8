"""Temporal models over label-rate sequences of embeddings: (batch, steps, features) -> (batch, steps, outputs),
or, for a dynamic model with `output: per_window`, one output per window: (batch, steps, features) ->
(batch, outputs).

Each family is a small module built from a frozen config, so a checkpoint can rebuild it: the SUN dynamic
transformer, the USTC temporal-convolution + transformer, Savchenko's per-frame linear head, and the SUN audio
models over frozen PDEM features (AudioModelV1: GRU, AudioModelV2: transformer).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

FAMILIES = ("transformer", "tcn_transformer", "linear", "audio_gru", "audio_transformer")
OUTPUTS = ("per_step", "per_window")
"""per_step: one output per step (sequence to sequence); per_window: one per window (sequence to one, the SUN ABAW
2024 paper's Fig. 3), which prediction places at the window's centre (`training.predict`)."""
PER_WINDOW_FAMILIES = ("transformer", "tcn_transformer")


@dataclass(frozen=True)
class ModelConfig:
    family: str
    n_features: int
    n_outputs: int
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 8
    dropout: float = 0.1
    ff_multiplier: int = 4
    max_len: int = 4096
    tcn_kernel: int = 3
    tcn_dilations: tuple[int, ...] = (1, 2, 4, 8)
    audio_units: int = 256  # GRU units / transformer width of the audio models
    audio_heads: tuple[int, ...] = (32, 16)  # AudioModelV2: one transformer layer per entry
    audio_gru_layers: int = 2  # AudioModelV1
    audio_dense: int = 256
    slot_steps: int = 1  # steps per label of the audio models' output (EXPR: one label per second)
    output: str = "per_step"  # OUTPUTS; checkpoints written before the key existed are per_step

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> ModelConfig:
        """The config `to_dict` gave, as a checkpoint stores it (its tuples read back as lists)."""
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in fields.items()})


class SinusoidalPositionalEncoding(nn.Module):
    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        scale = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * scale)
        table[:, 1::2] = torch.cos(position * scale)
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]]


def _encoder(config: ModelConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        config.d_model, config.n_heads, config.ff_multiplier * config.d_model, config.dropout,
        batch_first=True, norm_first=True,
    )
    return nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)


def mean_over_steps(hidden: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
    """(batch, steps, d) -> (batch, d): the mean of each window's unpadded steps.

    Mean pooling rather than attention pooling: a window gives one target instead of one per step, so there are
    far fewer targets to fit extra pooling weights on, and the VA target is itself the mean of the window's labels.
    Padded states are selected away, not multiplied by 0, so that whatever the encoder leaves there cannot leak in.
    """
    if padding is None:
        return hidden.mean(dim=1)
    keep = (~padding).unsqueeze(-1)
    total = torch.where(keep, hidden, torch.zeros_like(hidden)).sum(dim=1)
    return total / keep.sum(dim=1).clamp(min=1).to(hidden.dtype)


def readout(head: nn.Module, hidden: torch.Tensor, padding: torch.Tensor | None, output: str) -> torch.Tensor:
    """The head on every step's state (per_step), or on the window's pooled state (per_window)."""
    return head(hidden) if output == "per_step" else head(mean_over_steps(hidden, padding))


class TemporalTransformer(nn.Module):
    """The SUN dynamic model: projection, sinusoidal positions, transformer encoder, per-step or per-window head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.project = nn.Sequential(nn.Linear(config.n_features, config.d_model), nn.LayerNorm(config.d_model))
        self.position = SinusoidalPositionalEncoding(config.d_model, config.max_len)
        self.encoder = _encoder(config)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.d_model, config.n_outputs)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(self.dropout(self.position(self.project(x))), src_key_padding_mask=padding)
        return readout(self.head, hidden, padding, self.config.output)


class DilatedBlock(nn.Module):
    """Residual non-causal dilated convolution over time; padded steps are zeroed so they add nothing."""

    def __init__(self, channels: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.norm = nn.BatchNorm1d(channels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return (x + self.dropout(torch.relu(self.norm(self.conv(x))))) * keep


class TCNTransformer(nn.Module):
    """The USTC model: dilated temporal convolutions, then a transformer encoder, then a per-step or per-window
    head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.project = nn.Linear(config.n_features, config.d_model)
        self.blocks = nn.ModuleList(
            DilatedBlock(config.d_model, config.tcn_kernel, d, config.dropout) for d in config.tcn_dilations
        )
        self.position = SinusoidalPositionalEncoding(config.d_model, config.max_len)
        self.encoder = _encoder(config)
        self.head = nn.Linear(config.d_model, config.n_outputs)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        keep = torch.ones_like(x[..., :1]) if padding is None else (~padding).unsqueeze(-1).to(x.dtype)
        hidden = (self.project(x) * keep).transpose(1, 2)
        for block in self.blocks:
            hidden = block(hidden, keep.transpose(1, 2))
        hidden = self.encoder(self.position(hidden.transpose(1, 2)), src_key_padding_mask=padding)
        return readout(self.head, hidden, padding, self.config.output)


class LinearHead(nn.Module):
    """Savchenko's frame-level model: a linear layer on frozen per-frame features (smoothed afterwards)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.n_features, config.n_outputs))

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(x)


class AudioModel(nn.Module):
    """The SUN audio models over frozen embeddings: a temporal encoder, a temporal CNN that aggregates
    `slot_steps` steps into one label slot, two dense layers; each slot's output is given to its steps.

    The encoder is two GRU layers (AudioModelV1, family audio_gru) or transformer layers with the heads of
    `audio_heads` (AudioModelV2, family audio_transformer).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        units = config.audio_units
        if config.family == "audio_gru":
            self.gru = nn.GRU(config.n_features, units, config.audio_gru_layers, batch_first=True,
                              dropout=config.dropout if config.audio_gru_layers > 1 else 0.0)
        else:
            self.project = nn.Linear(config.n_features, units)
            self.position = SinusoidalPositionalEncoding(units, config.max_len)
            self.layers = nn.ModuleList(
                nn.TransformerEncoderLayer(units, heads, config.ff_multiplier * units, config.dropout,
                                           batch_first=True, norm_first=True)
                for heads in config.audio_heads
            )
        self.aggregate = nn.Conv1d(units, units, config.slot_steps, stride=config.slot_steps)
        self.dense = nn.Sequential(nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(units, config.audio_dense),
                                   nn.ReLU(), nn.Dropout(config.dropout),
                                   nn.Linear(config.audio_dense, config.n_outputs))

    def encode(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        if self.config.family == "audio_gru":
            return self.gru(x)[0]
        hidden = self.position(self.project(x))
        for layer in self.layers:
            hidden = layer(hidden, src_key_padding_mask=padding)
        return hidden

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        if padding is not None:
            x = x * (~padding).unsqueeze(-1).to(x.dtype)
        steps, slot = x.shape[1], self.config.slot_steps
        hidden = self.encode(x, padding)
        short = -steps % slot  # a window cut short by the recording's end: its last slot is partial
        hidden = nn.functional.pad(hidden.transpose(1, 2), (0, short))
        slots = self.dense(self.aggregate(hidden).transpose(1, 2))
        return slots.repeat_interleave(slot, dim=1)[:, :steps]


_BUILDERS = {"transformer": TemporalTransformer, "tcn_transformer": TCNTransformer, "linear": LinearHead,
             "audio_gru": AudioModel, "audio_transformer": AudioModel}


def build_model(config: ModelConfig) -> nn.Module:
    if config.family not in _BUILDERS:
        raise ValueError(f"unknown model family '{config.family}' (expected one of {', '.join(FAMILIES)})")
    if config.output not in OUTPUTS:
        raise ValueError(f"unknown model output '{config.output}' (expected one of {', '.join(OUTPUTS)})")
    if config.output == "per_window" and config.family not in PER_WINDOW_FAMILIES:
        raise ValueError(f"model family '{config.family}' has no per_window output (only "
                         f"{', '.join(PER_WINDOW_FAMILIES)} do)")
    return _BUILDERS[config.family](config)

