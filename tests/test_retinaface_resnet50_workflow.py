"""The whole RetinaFace ResNet-50 path: rule build_venv builds the venv of envs/retinaface.yaml (pip installs
TensorFlow and retina-face: minutes), fetch_resource takes retinaface.h5 from a mirror (accepted unpinned), and
detect_faces runs `retinaface_resnet50+mediapipe`, the package's model in a child process of the job.

The real weights cannot be had here, so the mirror holds untrained weights in the package's own format, written
by tests/retinaface_resnet50_untrained_weights.py (the package's Keras model, seeded random weights, every
large anchor scored a face): the loading and detection path is the real one, the boxes are not faces.

Opt-in, because of the venv build:
AVAFFECT_TEST_RETINAFACE=1 .venv/bin/python -m pytest tests/test_retinaface_resnet50_workflow.py
"""

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from test_workflow import mirrored_workdir, snakemake

from avaffect.face.detectors import build_detector
from avaffect.media.video import iter_frames

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.skipif(os.environ.get("AVAFFECT_TEST_RETINAFACE") != "1",
                       reason="builds the RetinaFace venv (pip, TensorFlow, minutes): set AVAFFECT_TEST_RETINAFACE=1"),
]
VENV_READY = ".snakemake/venvs/retinaface/pins.txt"
VENV_PYTHON = ".snakemake/venvs/retinaface/bin/python"
SAMPLE = "demo11"  # 12 s at 8 fps: 96 frames of 192 x 192
SETTINGS = {"retinaface_resnet50": {"score_threshold": 0.9, "allow_upscaling": False}}


def write_untrained_weights(workdir: Path, path: Path, seed: int) -> None:
    writer = REPO / "tests" / "retinaface_resnet50_untrained_weights.py"
    subprocess.run([workdir / VENV_PYTHON, writer, path, str(seed)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def resnet50_run(tmp_path_factory):
    workdir, mirror = mirrored_workdir(
        tmp_path_factory.mktemp("retinaface_resnet50"), "retinaface", "resnet50.yaml",
        {"faces": {"detector": "retinaface_resnet50+mediapipe"} | SETTINGS}, "retinaface_resnet50")
    started = time.monotonic()
    snakemake(workdir, VENV_READY, "--configfile", "resnet50.yaml")
    print(f"build_venv retinaface: {time.monotonic() - started:.0f} s")
    write_untrained_weights(workdir, mirror / "retinaface" / "retinaface.h5", seed=1)
    started = time.monotonic()
    snakemake(workdir, f"results/faces/{SAMPLE}.parquet", "--configfile", "resnet50.yaml")
    print(f"detect_faces {SAMPLE} with fetch_resource: {time.monotonic() - started:.0f} s")
    return workdir


def test_every_frame_has_a_tracked_box_of_the_resnet50(resnet50_run):
    table = pd.read_parquet(resnet50_run / "results" / "faces" / f"{SAMPLE}.parquet")
    assert len(table) == 96 and table["has_face"].all()
    assert set(table["detector"]) == {"retinaface_resnet50"} and (table["n_faces"] >= 1).all()
    assert (table["x1"] < table["x2"]).all() and (table["y1"] < table["y2"]).all()
    assert table[["x1", "y1"]].min().min() >= 0 and table[["x2", "y2"]].max().max() <= 192
    landmarks = table[[c for c in table.columns if c.endswith(("_x", "_y"))]]
    assert landmarks.notna().all().all() and (table["left_eye_x"] <= table["right_eye_x"]).all()
    log = (resnet50_run / "results" / "logs" / "detect_faces" / f"{SAMPLE}.log").read_text()
    assert "retinaface_resnet50+mediapipe" in log


def test_the_detector_uses_the_weights_it_is_given(resnet50_run, tmp_path):
    """Other weights, other boxes: the package loaded the file handed to it, not weights of its own."""
    write_untrained_weights(resnet50_run, tmp_path / "retinaface.h5", seed=2)
    video = resnet50_run / "results" / "demo_corpus" / "videos" / f"{SAMPLE}.mp4"
    frames = [image for _, image in iter_frames(video, frames=range(1, 5))]
    boxes = {}
    for name, weights in (("given", resnet50_run / "resources" / "retinaface" / "retinaface.h5"),
                          ("other", tmp_path / "retinaface.h5")):
        detector = build_detector("retinaface_resnet50", SETTINGS, "cpu", {"retinaface_resnet50": weights},
                                  {"retinaface_resnet50": resnet50_run / VENV_PYTHON})
        found = detector.detect_batch(frames)
        detector.close()
        boxes[name] = np.array([[face.x1, face.y1, face.x2, face.y2] for face in found[0]])
    table = pd.read_parquet(resnet50_run / "results" / "faces" / f"{SAMPLE}.parquet")
    first = table.iloc[0]
    assert any(np.allclose(box, first[["x1", "y1", "x2", "y2"]].to_numpy(float)) for box in boxes["given"])
    assert boxes["given"].shape != boxes["other"].shape or not np.allclose(boxes["given"], boxes["other"])


def test_a_corrupt_weights_file_stops_detection_with_its_name(resnet50_run):
    """An accepted unpinned file is not checked by sha256: the package's own loading error, from the child,
    fails the job with the file's name."""
    weights = resnet50_run / "resources" / "retinaface" / "retinaface.h5"
    weights.write_bytes(weights.read_bytes()[:1000])
    failed = snakemake(resnet50_run, f"results/faces/{SAMPLE}.parquet", "--configfile", "resnet50.yaml",
                       "--forcerun", "detect_faces", check=False)
    assert failed.returncode != 0
    log = (resnet50_run / "results" / "logs" / "detect_faces" / f"{SAMPLE}.log").read_text()
    assert "RetinaFace ResNet-50 child" in log and f"--weights {weights}" in log and "truncated file" in log
