"""Static (per-frame) expression / valence-arousal models: a timm backbone with the SUN team's head, the
face crops they read, and per-frame embeddings from a trained checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from avaffect.core.checkpoints import CheckpointError, read_torch_file
from avaffect.core.resources import sha256_of
from avaffect.corpus.tasks import EXPR_CLASSES, VA_DIMENSIONS, output_activation
from avaffect.face.boxes import FaceBox, crop_box
from avaffect.face.engines import forward_on
from avaffect.media.video import numbered_batches

BACKBONES = ("efficientnet_b1", "efficientnet_b4", "vit_base_patch16_224")
"""timm architectures of the SUN static models (EfficientNet-B1, EfficientNet-B4, ViT-B/16)."""
IMAGENET_RESOURCES = {name: f"timm_{name}" for name in BACKBONES}
"""Manifest key of each backbone's ImageNet weights (resources/manifest.yaml)."""
HEAD_OUTPUTS = {"expr": list(EXPR_CLASSES), "va": list(VA_DIMENSIONS)}


@dataclass(frozen=True)
class StaticConfig:
    backbone: str
    task: str  # the head: expr (8-way softmax) or va (2 tanh outputs)
    embedding_dim: int
    dropout: float

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown static backbone '{self.backbone}' (expected one of {BACKBONES})")
        if self.task not in HEAD_OUTPUTS:
            raise ValueError(f"static task must be one of {list(HEAD_OUTPUTS)}, got '{self.task}'")


class StaticFER(nn.Module):
    """Backbone features -> dropout -> dense -> batch norm -> tanh embedding -> task head (raw scores;
    `output_activation` gives the softmax / tanh outputs)."""

    def __init__(self, config: StaticConfig, imagenet_weights: Path | None = None):
        super().__init__()
        import timm

        self.config = config
        overlay = {"file": str(imagenet_weights)} if imagenet_weights else None
        # num_classes=0 drops the ImageNet classifier; timm loads the rest of a local weights file.
        self.backbone = timm.create_model(config.backbone, pretrained=imagenet_weights is not None,
                                          pretrained_cfg_overlay=overlay, num_classes=0)
        self.embedding = nn.Sequential(
            nn.Dropout(config.dropout),
            nn.Linear(self.backbone.num_features, config.embedding_dim),
            nn.BatchNorm1d(config.embedding_dim),
            nn.Tanh(),
        )
        self.head = nn.Linear(config.embedding_dim, len(HEAD_OUTPUTS[config.task]))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding (B, embedding_dim), raw head scores (B, n_outputs)) of normalised images (B, 3, H, W)."""
        embedding = self.embedding(self.backbone(images))
        return embedding, self.head(embedding)


@dataclass(frozen=True)
class Preprocessing:
    """What a backbone expects of its input: square side and per-channel RGB mean and std on [0, 1]."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def of(cls, model: StaticFER) -> Preprocessing:
        import timm.data

        data = timm.data.resolve_model_data_config(model.backbone)
        return cls(int(data["input_size"][-1]), tuple(data["mean"]), tuple(data["std"]))


def face_crop(image: np.ndarray, box: FaceBox, margin_px: float, size: int) -> np.ndarray:
    """The face with a fixed margin, clipped to the frame, resized to (size, size) RGB uint8."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = crop_box(box, width, height, margin_px)
    return cv2.resize(image[y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)


class OnCrops(nn.Module):
    """A static model on face crops as they are cut, (N, size, size, 3) uint8 RGB: the backbone's normalisation
    is part of the model, so that onnxruntime does it in one pass with the first layer."""

    def __init__(self, model: StaticFER, prep: Preprocessing):
        super().__init__()
        self.model = model
        device = next(model.parameters()).device
        mean, std = channel_stats(prep)
        self.register_buffer("mean", mean.to(device))
        self.register_buffer("std", std.to(device))

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(normalised(crops, self.mean, self.std))


def channel_stats(prep: Preprocessing) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's per-channel mean and std, shaped (1, 3, 1, 1)."""
    return torch.tensor(prep.mean).view(1, 3, 1, 1), torch.tensor(prep.std).view(1, 3, 1, 1)


def normalised(crops: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(N, 3, size, size) float32 from (N, size, size, 3) uint8 crops, standardised per channel on [0, 1]."""
    return (crops.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def crop_embedder(model: StaticFER, prep: Preprocessing, device: str, engine: str = "torch"
                  ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(embeddings (B, embedding_dim), head outputs (B, n_outputs)) of a batch of crops, in eval mode, the
    forward passes run by `engine` (avaffect.face.engines; torch while training, where the weights change)."""
    forward = forward_on(OnCrops(model, prep), torch.zeros(1, prep.size, prep.size, 3, dtype=torch.uint8), engine,
                         device)

    def embed(crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embedding, raw = forward(torch.from_numpy(np.ascontiguousarray(crops)))
        return embedding.cpu().numpy(), output_activation(model.config.task, raw).cpu().numpy()

    return embed


def embed_frames(embed: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                 numbered_crops: Iterable[tuple[int, np.ndarray]], batch_size: int
                 ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """(embedding, head outputs) by frame number, `embed` (crop_embedder) given `batch_size` crops at a time as
    they arrive, so a long video never holds more than one batch of crops."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for numbers, crops in numbered_batches(numbered_crops, batch_size):
        embedding, outputs = embed(np.stack(crops))
        out.update(zip(numbers, zip(embedding, outputs, strict=True), strict=True))
    return out


def embedding_rows(frames: np.ndarray, found: dict[int, tuple[np.ndarray, np.ndarray]], embedding_dim: int,
                   n_outputs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embedding matrix, head outputs, present) aligned to `frames`: zeros / NaN where no face was seen."""
    matrix = np.zeros((len(frames), embedding_dim), np.float32)
    outputs = np.full((len(frames), n_outputs), np.nan, np.float32)
    present = np.array([int(f) in found for f in frames], bool)
    for i in np.flatnonzero(present):
        matrix[i], outputs[i] = found[int(frames[i])]
    return matrix, outputs, present


def load_static(checkpoint: dict, device: str) -> tuple[StaticFER, Preprocessing]:
    """A fine-tuned static model in eval mode, built with random backbone weights then overwritten."""
    model = StaticFER(StaticConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])
    prep = checkpoint["preprocessing"]
    return model.to(device).eval(), Preprocessing(prep["size"], tuple(prep["mean"]), tuple(prep["std"]))


def read_state_dict(path: Path, sha256: str) -> dict[str, torch.Tensor]:
    """The tensors of a user's pretrained FER checkpoint, after checking its sha256, read without pickle: a
    safetensors file, or a torch file of tensors only (weights_only), flat or under `state_dict`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: pretrained FER checkpoint (static.init_checkpoint.path) not found")
    actual = sha256_of(path)
    if actual != sha256.lower():
        raise CheckpointError(f"{path}: sha256 is {actual}, but static.init_checkpoint.sha256 expects {sha256}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    state = read_torch_file(path, "pretrained FER checkpoint")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (flat or under 'state_dict')")
    return state


def load_pretrained(model: StaticFER, state: dict[str, torch.Tensor], source: Path, log: Callable[[str], None]
                    ) -> None:
    """Overwrite the model's weights with a pretrained FER state dict, strictly: every key must match. The one
    exception is a head of another size: pre-training on other FER corpora often has another class set (e.g.
    7 basic expressions, or VA instead of EXPR), so the backbone and embedding carry over and the head keeps its
    fresh initialisation for this task."""
    own = model.state_dict()
    head = {k for k in own if k.startswith("head.")}
    if any(k in state and state[k].shape != own[k].shape for k in head):
        log(f"{source}: head {tuple(state['head.weight'].shape)} differs from this task's "
            f"{tuple(own['head.weight'].shape)}; the head is re-initialised")
        state = {k: v for k, v in state.items() if k not in head} | {k: own[k] for k in head}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{source}: does not fit a {model.config.backbone} static model: "
                              f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                              f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: does not fit a {model.config.backbone} static model "
                              f"({str(err).splitlines()[-1].strip()})") from err
