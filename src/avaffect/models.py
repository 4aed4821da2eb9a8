"""Temporal models over label-rate sequences of embeddings."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TransformerConfig:
    """The SUN dynamic model: a transformer encoder over windows of per-step embeddings."""

    n_features: int
    n_outputs: int
    d_model: int = 64
    n_layers: int = 3
    n_heads: int = 8
    dropout: float = 0.1
    ff_multiplier: int = 4
    max_len: int = 4096

    def to_dict(self) -> dict:
        return asdict(self)


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


class TemporalTransformer(nn.Module):
    """(batch, steps, features) -> (batch, steps, outputs): one prediction per step of the window."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.project = nn.Sequential(nn.Linear(config.n_features, config.d_model), nn.LayerNorm(config.d_model))
        self.position = SinusoidalPositionalEncoding(config.d_model, config.max_len)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, config.ff_multiplier * config.d_model, config.dropout,
            batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.d_model, config.n_outputs)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.encoder(self.dropout(self.position(self.project(x))), src_key_padding_mask=padding)
        return self.head(hidden)


def output_activation(task: str, raw: torch.Tensor) -> torch.Tensor:
    """VA in [-1, 1]; EXPR as class probabilities."""
    return torch.tanh(raw) if task == "va" else torch.softmax(raw, dim=-1)
