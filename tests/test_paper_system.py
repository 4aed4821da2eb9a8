"""The SUN ABAW 2024 system as config/affwild2.yaml composes it, run on the demo corpus from nothing to the
submission files of every system, through every stage of the paper: RetinaFace MobileNet-0.25 (the real weights,
from ../shared), Spleeter in its venv, mouth-based voice activity, both static models (EfficientNet-B1 on VA,
ViT-B/16 on EXPR), the sequence-to-one transformer sweep including the 1 s window, KELM on the static
embeddings' functionals, the three PDEM audio models fine-tuned end to end, DWF and RF, Sys1 to Sys4.

What cannot be had here is replaced by a stand-in of the real format, said so:
- Spleeter's 2stems checkpoint: an untrained one in Spleeter's own format (tests/spleeter_untrained_checkpoint.py);
- PDEM: the release's architecture built from its shipped config, shrunk to 4 layers of width 64, random weights
  saved in the release's safetensors layout (AudioModelV3 unfreezes 4 layers, so 4 it must have); the workdir's
  copy of the manifest pins the shrunk config;
- the static models' ImageNet weights: random initialisation (`static.imagenet_init: false`).
The overlay below only shrinks sizes (epochs, frames, draws, the sweep to 1 and 2 s); it skips no stage.

The run builds the Spleeter venv (pip downloads TensorFlow: minutes) and takes about twenty minutes on two cores
(the ViT-B/16 embeddings most of it).
With AVAFFECT_PAPER_RUN_RECORD=<folder>, the metrics table and the runtimes (peak memory per rule) are copied
there for docs/systems.md.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from test_spleeter_workflow import VENV_READY, write_untrained_checkpoint
from test_workflow import make_workdir, pdem_stand_in, snakemake

from avaffect.fusion.submission import read_submission

pytestmark = pytest.mark.workflow

PAPER_CONFIG = ["--configfile", "config/affwild2.yaml", "paper_demo.yaml"]
SYSTEMS = ["sys1", "sys2", "sys3", "sys4", "audio_v1_alone", "audio_v2_alone", "audio_v3_alone"]
TEST_VIDEOS = ["demo12", "demo13", "demo14"]
UNPINNED = ["timm_efficientnet_b1", "timm_vit_base_patch16_224", "spleeter_2stems", "pdem_weights"]
SMALL = {
    "corpus": {"root": "results/demo_corpus", "demo": True, "demo_test_labels": "results/demo_test_labels"},
    "separation": {"spleeter": {"chunk_s": 30.0, "mem_mb": 4000}},
    "static": {"imagenet_init": False, "epochs": 1, "frames_per_video": 12, "batch_size": 8},
    "models": {name: {"windows_s": [1.0, 2.0]} for name in ("visual_va", "visual_expr")},
    "training": {"epochs": 3, "patience": 2, "batch_size": 16},
    "end_to_end": {"epochs": 1, "batch_size": 4},
    "fusion": {"draws": 300, "rf_trees": [10, 25]},
}


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, shared) -> Path:
    workdir = make_workdir(tmp_path_factory.mktemp("paper"))
    mirror = workdir / "mirror"
    (mirror / "retinaface").mkdir(parents=True)
    shutil.copy(shared / "weights" / "retinaface" / "mobilenet0.25_Final.pth", mirror / "retinaface")
    (mirror / "spleeter").mkdir()
    pdem_stand_in(shared, workdir, mirror, layers=4)
    overlay = SMALL | {"resources": {"mirror": str(mirror), "accept_unpinned": UNPINNED}}
    (workdir / "paper_demo.yaml").write_text(yaml.safe_dump(overlay))
    snakemake(workdir, VENV_READY, *PAPER_CONFIG)
    write_untrained_checkpoint(workdir, mirror / "spleeter" / "2stems.tar.gz", seed=1)
    snakemake(workdir, *PAPER_CONFIG)
    record = os.environ.get("AVAFFECT_PAPER_RUN_RECORD")
    if record:
        Path(record).mkdir(parents=True, exist_ok=True)
        for name in ("metrics/validation.csv", "report/runtimes.csv"):
            if (workdir / "results" / name).is_file():
                shutil.copy(workdir / "results" / name, Path(record) / Path(name).name)
    return workdir


def log_of(workdir: Path, *parts: str) -> str:
    return (workdir / "results" / "logs" / Path(*parts)).read_text()


def test_every_system_writes_valid_submissions_of_every_test_frame(paper_run):
    counts = {v: json.loads((paper_run / "results" / "probe" / f"{v}.json").read_text())["n_frames"]
              for v in TEST_VIDEOS}
    expected = [f"{v}/{k:05d}.jpg" for v in TEST_VIDEOS for k in range(1, counts[v] + 1)]
    for task in ("va", "expr"):
        for system in SYSTEMS:
            table = read_submission(paper_run / "results" / "submissions" / system / f"submission_{task}.txt", task)
            assert table["image_location"].tolist() == expected, (system, task)
            assert np.isfinite(table.drop(columns="image_location").to_numpy(float)).all(), (system, task)
        choice = json.loads((paper_run / "results" / f"submission_{task}.json").read_text())
        assert set(choice["candidates"]) == set(SYSTEMS)


def test_the_front_end_is_the_papers(paper_run):
    assert "retinaface" in log_of(paper_run, "detect_faces", "demo09.log")
    for video in ("demo09", "demo13"):
        assert (paper_run / "results" / "audio" / "vocals" / f"{video}.wav").is_file()
    assert "mouth" in log_of(paper_run, "voice_activity", "demo09.log")


def test_both_static_models_are_trained_on_their_task_and_embed_every_sample(paper_run):
    for static_model, task in (("effnet_b1_va", "va"), ("vit_expr", "expr")):
        metrics = json.loads((paper_run / "results" / "static" / static_model / "metrics.json").read_text())
        assert metrics["task"] == task, metrics
        table = pd.read_parquet(paper_run / "results" / "embeddings" / "face" / static_model / "demo12.parquet")
        assert len(table) > 0


def test_the_window_sweep_includes_one_second_and_keeps_one_window_per_model_and_task(paper_run):
    for model, task in (("visual_va", "va"), ("visual_expr", "expr")):
        for window in ("1", "2"):
            assert (paper_run / "results" / "models" / model / task / f"w{window}" / "metrics.json").is_file()
        selected = json.loads((paper_run / "results" / "models" / model / task / "selected.json").read_text())
        assert selected["window_s"] in (1.0, 2.0) and set(selected["scores"]) == {"1", "2"}, selected


def test_the_three_audio_models_are_fine_tuned_end_to_end_per_task(paper_run):
    for model in ("audio_v1", "audio_v2", "audio_v3"):
        for task in ("va", "expr"):
            folder = paper_run / "results" / "models" / model / task / "w4"
            assert (folder / "checkpoint.pt").is_file() or any(folder.glob("*.safetensors")), folder
            predictions = pd.read_parquet(paper_run / "results" / "predictions" / model / task / "test.parquet")
            assert set(predictions["video"]) <= set(TEST_VIDEOS)


def test_kelm_reads_the_static_embeddings_functionals(paper_run):
    for model, task in (("kelm_va", "va"), ("kelm_expr", "expr")):
        assert (paper_run / "results" / "predictions" / model / task / "test.parquet").is_file()


def test_dwf_and_rf_systems_record_their_method(paper_run):
    for task in ("va", "expr"):
        for system, method in (("sys2", "dwf"), ("sys3", "dwf"), ("sys4", "rf"), ("sys1", "none")):
            report = json.loads((paper_run / "results" / "fusion" / task / system / "metrics.json").read_text())
            assert report["method"] == method, (task, system, report)
