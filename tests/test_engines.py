"""Inference engines: onnxruntime must give what eager torch gives, for RetinaFace at any frame size and for
each static backbone, so that `engine: auto` changes the speed of the front-end and nothing else."""

import numpy as np
import pytest
import torch
from test_retinaface import WEIGHTS, read_rgb
from test_workflow import make_workdir, snakemake

from avaffect.face.backbones import BACKBONES, Preprocessing, StaticConfig, StaticFER, crop_embedder, embed_frames
from avaffect.face.engines import forward_on, resolve_engine
from avaffect.face.retinaface import RetinaFaceDetector

BOX_TOLERANCE_PX = 0.05
SCORE_TOLERANCE = 1e-4
EMBEDDING_TOLERANCE = 1e-4


def test_auto_is_onnxruntime_on_the_cpu_and_torch_on_cuda():
    assert resolve_engine("auto", "cpu") == "onnxruntime"
    assert resolve_engine("auto", "cuda:0") == "torch"
    assert resolve_engine("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="onnxruntime runs on the CPU only, but the device is cuda"):
        resolve_engine("onnxruntime", "cuda")
    with pytest.raises(ValueError, match="unknown inference engine 'tensorrt'"):
        resolve_engine("tensorrt", "cpu")


def test_onnxruntime_forward_equals_torch_for_every_batch_size():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(1)).eval()
    example = torch.zeros(1, 3, 8, 8)
    runs = {engine: forward_on(model, example, engine, "cpu") for engine in ("torch", "onnxruntime")}
    for batch in (1, 5):
        x = torch.randn(batch, 3, 8, 8)
        (expected,), (found,) = (runs[engine](x) for engine in ("torch", "onnxruntime"))
        assert found.shape == expected.shape and torch.allclose(found, expected, atol=1e-6)


@pytest.mark.parametrize("photo", ["two_people.jpg", "obama-240p.jpg"])  # two sizes, neither the traced one
def test_retinaface_finds_the_same_faces_with_onnxruntime_and_torch(shared, photo):
    image = read_rgb(shared / "media" / "photos" / photo)
    found = {engine: RetinaFaceDetector(shared / WEIGHTS, "cpu", engine=engine).detect_batch([image, image[:, ::-1]])
             for engine in ("torch", "onnxruntime")}
    assert [len(faces) for faces in found["torch"]] == [len(faces) for faces in found["onnxruntime"]]
    assert sum(len(faces) for faces in found["torch"]) >= 2
    for expected, got in zip(found["torch"], found["onnxruntime"], strict=True):
        for a, b in zip(expected, got, strict=True):
            assert np.allclose([a.x1, a.y1, a.x2, a.y2], [b.x1, b.y1, b.x2, b.y2], atol=BOX_TOLERANCE_PX)
            assert abs(a.score - b.score) < SCORE_TOLERANCE
            assert np.allclose(a.landmarks, b.landmarks, atol=BOX_TOLERANCE_PX)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_static_embeddings_are_the_same_with_onnxruntime_and_torch(backbone):
    torch.manual_seed(0)
    model = StaticFER(StaticConfig(backbone, "expr", 256, 0.2))
    prep = Preprocessing.of(model)
    crops = np.random.default_rng(0).integers(0, 256, size=(3, prep.size, prep.size, 3), dtype=np.uint8)
    numbered = list(enumerate(crops, start=1))
    torch_out = embed_frames(crop_embedder(model, prep, "cpu", "torch"), numbered, 2)
    onnx_out = embed_frames(crop_embedder(model, prep, "cpu", "onnxruntime"), numbered, 2)
    assert sorted(onnx_out) == sorted(torch_out) == [1, 2, 3]
    for frame, (embedding, outputs) in torch_out.items():
        assert np.allclose(onnx_out[frame][0], embedding, atol=EMBEDDING_TOLERANCE)
        assert np.allclose(onnx_out[frame][1], outputs, atol=EMBEDDING_TOLERANCE)


def test_onnxruntime_on_a_gpu_device_is_refused_at_start_up(tmp_path):
    workdir = make_workdir(tmp_path)
    failed = snakemake(workdir, "-n", "--config", "engine=onnxruntime", "device=cuda", check=False)
    assert failed.returncode != 0
    assert "engine onnxruntime runs on the CPU only, but device is cuda" in failed.stdout + failed.stderr
