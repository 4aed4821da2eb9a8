"""RetinaFace with a MobileNet-0.25 backbone in plain PyTorch, for biubug6/Pytorch_Retinaface weights.

Module and attribute names follow biubug6's models/net.py and models/retinaface.py exactly, so the
public `mobilenet0.25_Final.pth` state dict loads with strict=True; anchors, box/landmark decoding and
NMS follow layers/functions/prior_box.py and utils/box_utils.py, without torchvision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avaffect.core.checkpoints import read_torch_file
from avaffect.core.devices import resolve_device
from avaffect.face.boxes import FaceBox
from avaffect.face.engines import forward_on


@dataclass(frozen=True)
class RetinaFaceConfig:
    """biubug6's `cfg_mnet`, as far as inference needs it."""

    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variance: tuple[float, float] = (0.1, 0.2)
    in_channel: int = 32
    out_channel: int = 64
    # BGR channel means of the training images; inputs are not scaled to [0, 1].
    mean_bgr: tuple[float, float, float] = (104.0, 117.0, 123.0)
    # The original uses leaky ReLU in FPN/SSH only for narrow (<= 64 channel) models like this one.
    leaky_max_channels: int = 64
    leaky_slope: float = 0.1
    n_landmarks: int = 5

    @property
    def anchors_per_location(self) -> int:
        return len(self.min_sizes[0])


CFG_MNET = RetinaFaceConfig()
EXPORT_SIZE = (320, 320)  # the frame size traced for ONNX; height and width stay free in the graph


# --- network -------------------------------------------------------------------------------------------


def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_bn_no_relu(inp: int, oup: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn1x1(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, stride, padding=0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and leaky ReLU (MobileNetV1 block)."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 x0.25 up to its last stage; the classifier is left out because the detector never
    uses it and the published weights do not contain it."""

    def __init__(self, leaky: float = 0.1):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=leaky),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            conv_dw(64, 128, 2),
            *(conv_dw(128, 128, 1) for _ in range(5)),
        )
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Feature maps at strides 8, 16 and 32."""
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return c1, c2, self.stage3(c2)


class FPN(nn.Module):
    def __init__(self, in_channels: Sequence[int], out_channels: int, leaky: float):
        super().__init__()
        self.output1 = conv_bn1x1(in_channels[0], out_channels, leaky=leaky)
        self.output2 = conv_bn1x1(in_channels[1], out_channels, leaky=leaky)
        self.output3 = conv_bn1x1(in_channels[2], out_channels, leaky=leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, features: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        output1 = self.output1(features[0])
        output2 = self.output2(features[1])
        output3 = self.output3(features[2])
        output2 = self.merge2(output2 + F.interpolate(output3, size=output2.shape[2:], mode="nearest"))
        output1 = self.merge1(output1 + F.interpolate(output2, size=output1.shape[2:], mode="nearest"))
        return output1, output2, output3


class SSH(nn.Module):
    """Context module: parallel 3x3, 5x5 and 7x7 receptive fields (stacked 3x3 convs), concatenated."""

    def __init__(self, in_channel: int, out_channel: int, leaky: float):
        super().__init__()
        if out_channel % 4:
            raise ValueError(f"SSH out_channel must be divisible by 4, got {out_channel}")
        quarter = out_channel // 4
        self.conv3X3 = conv_bn_no_relu(in_channel, out_channel // 2)
        self.conv5X5_1 = conv_bn(in_channel, quarter, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(quarter, quarter)
        self.conv7X7_2 = conv_bn(quarter, quarter, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(quarter, quarter)

    def forward(self, x: Tensor) -> Tensor:
        conv5x5_1 = self.conv5X5_1(x)
        branches = (self.conv3X3(x), self.conv5X5_2(conv5x5_1), self.conv7x7_3(self.conv7X7_2(conv5x5_1)))
        return F.relu(torch.cat(branches, dim=1))


class _Head(nn.Module):
    """1x1 convolution predicting `values` numbers per anchor, flattened to (batch, anchors, values)."""

    def __init__(self, in_channels: int, num_anchors: int, values: int):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, num_anchors * values, kernel_size=1, stride=1, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1).contiguous()
        return out.view(out.shape[0], -1, self.values)


class ClassHead(_Head):
    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__(in_channels, num_anchors, 2)


class BboxHead(_Head):
    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__(in_channels, num_anchors, 4)


class LandmarkHead(_Head):
    def __init__(self, in_channels: int, num_anchors: int, n_landmarks: int = 5):
        super().__init__(in_channels, num_anchors, 2 * n_landmarks)


class RetinaFace(nn.Module):
    """Returns (loc, conf, landms): box offsets (B, A, 4), softmax class scores (B, A, 2) with the face
    probability in [..., 1], and landmark offsets (B, A, 10), for A anchors from `prior_boxes`."""

    def __init__(self, cfg: RetinaFaceConfig = CFG_MNET):
        super().__init__()
        self.cfg = cfg
        leaky = cfg.leaky_slope if cfg.out_channel <= cfg.leaky_max_channels else 0.0
        in_channels = [cfg.in_channel * 2, cfg.in_channel * 4, cfg.in_channel * 8]
        levels = len(cfg.steps)
        anchors = cfg.anchors_per_location
        self.body = MobileNetV1()
        self.fpn = FPN(in_channels, cfg.out_channel, leaky)
        self.ssh1 = SSH(cfg.out_channel, cfg.out_channel, leaky)
        self.ssh2 = SSH(cfg.out_channel, cfg.out_channel, leaky)
        self.ssh3 = SSH(cfg.out_channel, cfg.out_channel, leaky)
        self.ClassHead = nn.ModuleList(ClassHead(cfg.out_channel, anchors) for _ in range(levels))
        self.BboxHead = nn.ModuleList(BboxHead(cfg.out_channel, anchors) for _ in range(levels))
        self.LandmarkHead = nn.ModuleList(
            LandmarkHead(cfg.out_channel, anchors, cfg.n_landmarks) for _ in range(levels)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        fpn = self.fpn(self.body(x))
        features = (self.ssh1(fpn[0]), self.ssh2(fpn[1]), self.ssh3(fpn[2]))
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, features, strict=True)], dim=1)
        conf = torch.cat([head(f) for head, f in zip(self.ClassHead, features, strict=True)], dim=1)
        landms = torch.cat([head(f) for head, f in zip(self.LandmarkHead, features, strict=True)], dim=1)
        return loc, F.softmax(conf, dim=-1), landms


def load_retinaface(weights_path: Path, device: str | torch.device, cfg: RetinaFaceConfig = CFG_MNET
                    ) -> RetinaFace:
    """RetinaFace in eval mode on `device` with biubug6's weights, loaded strictly."""
    weights_path = Path(weights_path)
    state = read_torch_file(weights_path, "RetinaFace weights")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{weights_path}: expected a state dict of tensors, got {type(state).__name__}")
    # Checkpoints saved from nn.DataParallel prefix every key with `module.`.
    state = {key.removeprefix("module."): value for key, value in state.items()}
    model = RetinaFace(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights_path}: state dict does not fit RetinaFace MobileNet-0.25: {err}") from err
    return model.to(device).eval()


# --- anchors, decoding, NMS -----------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _prior_boxes_cpu(height: int, width: int, cfg: RetinaFaceConfig) -> Tensor:
    levels = []
    for step, min_sizes in zip(cfg.steps, cfg.min_sizes, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid((torch.arange(rows, dtype=torch.float64) + 0.5) * step / height,
                                (torch.arange(cols, dtype=torch.float64) + 0.5) * step / width, indexing="ij")
        sizes = torch.tensor(min_sizes, dtype=torch.float64)
        # Row-major over the feature map, then one anchor per min size: the order the heads emit.
        level = torch.stack(torch.broadcast_tensors(
            cx[..., None], cy[..., None], (sizes / width)[None, None], (sizes / height)[None, None]), dim=-1)
        levels.append(level.reshape(-1, 4))
    return torch.cat(levels).float()


def prior_boxes(height: int, width: int, cfg: RetinaFaceConfig = CFG_MNET) -> Tensor:
    """Anchors (A, 4) as (cx, cy, w, h) relative to the image, in the order the heads predict them."""
    return _prior_boxes_cpu(height, width, cfg)


def decode_boxes(loc: Tensor, priors: Tensor, variance: tuple[float, float]) -> Tensor:
    """Relative (x1, y1, x2, y2) boxes from regression offsets (A, 4) and their anchors."""
    centers = priors[:, :2] + loc[:, :2] * variance[0] * priors[:, 2:]
    sizes = priors[:, 2:] * torch.exp(loc[:, 2:] * variance[1])
    return torch.cat((centers - sizes / 2, centers + sizes / 2), dim=1)


def decode_landmarks(pre: Tensor, priors: Tensor, variance: tuple[float, float]) -> Tensor:
    """Relative landmark points (A, K, 2) from offsets (A, 2K) and their anchors."""
    offsets = pre.view(pre.shape[0], -1, 2)
    return priors[:, None, :2] + offsets * variance[0] * priors[:, None, 2:]


def nms(boxes: Tensor, scores: Tensor, threshold: float) -> Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first."""
    order = torch.argsort(scores, descending=True)
    x1, y1, x2, y2 = boxes.unbind(dim=1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    keep: list[Tensor] = []
    while order.numel() > 0:
        best, rest = order[0], order[1:]
        keep.append(best)
        w = (torch.minimum(x2[best], x2[rest]) - torch.maximum(x1[best], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[best], y2[rest]) - torch.maximum(y1[best], y1[rest])).clamp(min=0)
        inter = w * h
        overlap = inter / (areas[best] + areas[rest] - inter).clamp(min=torch.finfo(boxes.dtype).tiny)
        order = rest[overlap <= threshold]
    return torch.stack(keep) if keep else torch.zeros(0, dtype=torch.long, device=boxes.device)


# --- detector -------------------------------------------------------------------------------------------


class OnRGBFrames(nn.Module):
    """RetinaFace on decoded frames, (N, H, W, 3) uint8 RGB. The network was trained on BGR input with the
    channel means removed and no rescaling; inside the model, onnxruntime does that in one pass with the first
    layer instead of three passes over every frame in torch."""

    def __init__(self, model: RetinaFace, cfg: RetinaFaceConfig):
        super().__init__()
        self.model = model
        self.register_buffer("mean_bgr", torch.tensor(cfg.mean_bgr, dtype=torch.float32).view(1, 3, 1, 1).to(
            next(model.parameters()).device))

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        bgr = frames.permute(0, 3, 1, 2)[:, [2, 1, 0]].float()
        return self.model(bgr - self.mean_bgr)


class RetinaFaceDetector:
    """RetinaFace MobileNet-0.25 behind the FaceDetector protocol of avaffect.face.detectors.

    Landmarks come in RetinaFace's own order, which for upright faces is already LANDMARK_NAMES
    (image-left eye, image-right eye, nose, image-left and image-right mouth corner).
    """

    name = "retinaface"

    def __init__(self, weights_path: Path, device: str = "cpu", score_threshold: float = 0.8,
                 nms_threshold: float = 0.4, top_k: int = 750, pre_nms_top_k: int = 5000,
                 cfg: RetinaFaceConfig = CFG_MNET, engine: str = "auto"):
        self.device = torch.device(resolve_device(device))
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.pre_nms_top_k = pre_nms_top_k
        self.cfg = cfg
        self.model = load_retinaface(Path(weights_path), self.device, cfg)
        # Any frame size: the network is fully convolutional and the anchors follow the size.
        self._forward = forward_on(OnRGBFrames(self.model, cfg), torch.zeros(1, *EXPORT_SIZE, 3, dtype=torch.uint8),
                                   engine, str(self.device), size_axes=(1, 2))
        self._priors: dict[tuple[int, int], Tensor] = {}

    def _priors_for(self, height: int, width: int) -> Tensor:
        key = (height, width)
        if key not in self._priors:
            self._priors[key] = prior_boxes(height, width, self.cfg).to(self.device)
        return self._priors[key]

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        results: list[list[FaceBox]] = [[] for _ in images_rgb]
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images_rgb):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {index}: expected RGB (H, W, 3), got shape {image.shape}")
            groups.setdefault(image.shape, []).append(index)
        for indices in groups.values():
            for index, faces in zip(indices, self._detect_same_size([images_rgb[i] for i in indices]),
                                    strict=True):
                results[index] = faces
        return results

    @torch.inference_mode()
    def _detect_same_size(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        height, width = images_rgb[0].shape[:2]
        loc, conf, landms = self._forward(torch.from_numpy(np.stack(images_rgb)))
        priors = self._priors_for(height, width)
        scale = torch.tensor([width, height], dtype=torch.float32, device=self.device)
        return [self._postprocess(loc[i], conf[i, :, 1], landms[i], priors, scale, height, width)
                for i in range(len(images_rgb))]

    def _postprocess(self, loc: Tensor, scores: Tensor, landms: Tensor, priors: Tensor, scale: Tensor,
                     height: int, width: int) -> list[FaceBox]:
        candidates = torch.nonzero(scores > self.score_threshold).squeeze(1)
        if candidates.numel() == 0:
            return []
        scores = scores[candidates]
        if candidates.numel() > self.pre_nms_top_k:
            scores, top = scores.topk(self.pre_nms_top_k)
            candidates = candidates[top]
        priors = priors[candidates]
        boxes = decode_boxes(loc[candidates], priors, self.cfg.variance) * scale.repeat(2)
        points = decode_landmarks(landms[candidates], priors, self.cfg.variance) * scale
        keep = nms(boxes, scores, self.nms_threshold)[: self.top_k]
        boxes = boxes[keep]
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        boxes_np = boxes.cpu().numpy().astype(np.float64)
        scores_np = scores[keep].cpu().numpy().astype(np.float64)
        points_np = points[keep].cpu().numpy().astype(np.float32)
        return [FaceBox(*map(float, box), float(score), landmarks, self.name)
                for box, score, landmarks in zip(boxes_np, scores_np, points_np, strict=True)]
