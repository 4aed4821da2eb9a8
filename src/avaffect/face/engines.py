"""What runs the forward pass of the front-end's convnets (RetinaFace, the static backbones).

On the CPU, ONNX Runtime runs them several times faster than eager PyTorch (benchmarks/face_frontend.py,
docs/environments.md, Inference engine); on CUDA they stay in PyTorch, whose onnxruntime package here has no GPU build.
The ONNX graph is exported in memory from the module a job has just loaded, so there is no second model file
to keep in step with the weights or the checkpoint.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

ENGINES = ("auto", "torch", "onnxruntime")
# Opset 17 is the first with LayerNormalization (ViT-B/16) and is well inside what onnxruntime 1.32 runs.
ONNX_OPSET = 17

Forward = Callable[[Tensor], tuple[Tensor, ...]]
"""A model's forward pass on a batch: its outputs as a tuple of tensors."""


def resolve_engine(engine: str, device: str) -> str:
    """`auto` is onnxruntime on the CPU and torch elsewhere; onnxruntime on a GPU device is an error."""
    if engine not in ENGINES:
        raise ValueError(f"unknown inference engine '{engine}' (expected one of {ENGINES})")
    on_cpu = torch.device(device).type == "cpu"
    if engine == "auto":
        return "onnxruntime" if on_cpu else "torch"
    if engine == "onnxruntime" and not on_cpu:
        raise ValueError(f"engine onnxruntime runs on the CPU only, but the device is {device}: use engine torch "
                         f"or auto")
    return engine


def forward_on(model: nn.Module, example: Tensor, engine: str, device: str, size_axes: tuple[int, ...] = (),
               threads: int | None = None) -> Forward:
    """The eval-mode forward pass of `model` run by `engine` (resolved for `device`). `example` is one input of
    the dtype and shape the model will see: its batch size is free, and so is the length of its `size_axes`.
    The outputs are on `device` for torch and on the CPU for onnxruntime; `threads` defaults to torch's."""
    model.eval()
    if resolve_engine(engine, device) == "torch":
        def forward(batch: Tensor) -> tuple[Tensor, ...]:
            with torch.inference_mode():
                outputs = model(batch.to(device))
            return outputs if isinstance(outputs, tuple) else (outputs,)

        return forward
    return onnx_forward(model, example, size_axes, threads or torch.get_num_threads())


def onnx_forward(model: nn.Module, example: Tensor, size_axes: tuple[int, ...], threads: int) -> Forward:
    import onnxruntime

    axes = {0: "batch", **{axis: f"size_{axis}" for axis in size_axes}}
    graph = io.BytesIO()
    # The tracer warns about every Python-level shape computation; the shapes it records are checked against
    # eager outputs in tests/test_engines.py instead.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.cpu(), example.cpu(), graph, dynamo=False, input_names=["images"],
                          dynamic_axes={"images": axes}, opset_version=ONNX_OPSET)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(graph.getvalue(), options, providers=["CPUExecutionProvider"])

    def forward(batch: Tensor) -> tuple[Tensor, ...]:
        images = np.ascontiguousarray(batch.detach().cpu().numpy())
        return tuple(torch.from_numpy(output) for output in session.run(None, {"images": images}))

    return forward
