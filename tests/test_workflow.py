"""End to end: snakemake on the demo corpus, from nothing to both submission files, reruns, bad input."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, small_pdem_config
from test_make import made_demo

from avaffect.core.resources import sha256_of
from avaffect.corpus import demo
from avaffect.corpus.annotations import read_annotation
from avaffect.corpus.demo import demo_manifest
from avaffect.corpus.layout import annotation_path
from avaffect.corpus.metrics import macro_f1, p_va
from avaffect.corpus.tasks import SPLITS
from avaffect.fusion.submission import read_submission
from avaffect.tools.workdir import copy_workflow, planned_jobs

pytestmark = pytest.mark.workflow
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def make_workdir(path: Path) -> Path:
    return copy_workflow(REPO, path)


def mirrored_workdir(path: Path, folder: str, config_file: str, config: dict, unpinned: str) -> tuple[Path, Path]:
    """A workdir whose `config_file` adds `config` and takes model files from a mirror in it (accepting the
    resource `unpinned` unchecked), with `folder` made in that mirror; returns the workdir and the mirror."""
    workdir = make_workdir(path)
    mirror = workdir / "mirror"
    (mirror / folder).mkdir(parents=True)
    (workdir / config_file).write_text(yaml.safe_dump(
        {"resources": {"mirror": str(mirror), "accept_unpinned": [unpinned]}} | config))
    return workdir, mirror


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*SNAKEMAKE, "--cores", "2", *args], cwd=workdir, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    return made_demo(tmp_path_factory).workdir  # `make demo` in a copy, shared with test_make.py


def frame_labels(workdir: Path, task: str, split: str, videos: list[str], root: Path) -> np.ndarray:
    probes = {v: json.loads((workdir / "results" / "probe" / f"{v}.json").read_text()) for v in videos}
    parts = [read_annotation(annotation_path(root, task, split, v), task)[: probes[v]["n_frames"]] for v in videos]
    return np.concatenate(parts)


def test_both_submissions_are_valid_and_complete(demo_run):
    for task in ("va", "expr"):
        table = read_submission(demo_run / "results" / f"submission_{task}.txt", task)
        tests = ["demo12", "demo13", "demo14"]
        counts = {v: json.loads((demo_run / "results" / "probe" / f"{v}.json").read_text())["n_frames"]
                  for v in tests}
        expected = [f"{v}/{k:05d}.jpg" for v in tests for k in range(1, counts[v] + 1)]
        assert table["image_location"].tolist() == expected
        values = table.drop(columns="image_location").to_numpy(float)
        assert np.isfinite(values).all()


@pytest.mark.parametrize("method", ["swf", "dwf"])
def test_fused_validation_recovers_the_labels(demo_run, method):
    # out-of-fold: each validation video is fused with weights chosen without it
    fused = pd.read_parquet(demo_run / "results" / "fusion" / "va" / method / "validation.parquet")
    videos = list(dict.fromkeys(fused["video"]))
    truth = frame_labels(demo_run, "va", "validation", videos, demo_run / "results" / "demo_corpus")
    assert p_va(truth, fused[["valence", "arousal"]].to_numpy()) >= 0.9


def test_metrics_table_reports_models_and_out_of_fold_and_in_sample_fusion(demo_run):
    table = pd.read_csv(demo_run / "results" / "metrics" / "validation.csv")
    models = {"visual", "visual_tcn", "visual_linear", "visual_kelm", "audio"}
    for task, metric in (("va", "p_va"), ("expr", "macro_f1")):
        rows = table[table["task"] == task]
        assert set(rows[rows["kind"] == "model"]["name"]) == models
        fusion = rows[rows["kind"] == "fusion"]
        assert set(zip(fusion["name"], fusion["estimate"], strict=True)) == {
            (m, e) for m in ("swf", "dwf", "rf") for e in ("out_of_fold", "in_sample")}
        assert rows[metric].notna().all()


def test_report_shows_every_validation_video_the_metrics_and_the_runtimes(demo_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake(demo_run, "--report", str(report))
    html = report.read_text()
    manifest = demo_manifest(demo_run / "results" / "demo_corpus")
    for task in ("va", "expr"):
        assert manifest.samples[task]["validation"]
        for sample in manifest.samples[task]["validation"]:
            assert f"results/report/validation/{task}/{sample}.png" in html
    for result in ("results/metrics/validation.csv", "results/report/runtimes.csv", "results/report/runtimes.png"):
        assert result in html
    runtimes = pd.read_csv(demo_run / "results" / "report" / "runtimes.csv")
    assert {"ingest_video", "train", "fuse", "submission", "validation_figures"} <= set(runtimes["rule"])


def test_window_sweep_keeps_the_best_validation_window(demo_run):
    selected = json.loads((demo_run / "results" / "models" / "visual" / "va" / "selected.json").read_text())
    assert set(selected["scores"]) == {"2", "4"}
    assert selected["scores"][f"{selected['window_s']:g}"] == max(selected["scores"].values())


def test_test_submission_scores_against_the_hidden_labels(demo_run):
    root = demo_run / "results" / "demo_test_labels"
    va = read_submission(demo_run / "results" / "submission_va.txt", "va")
    expr = read_submission(demo_run / "results" / "submission_expr.txt", "expr")
    videos = list(dict.fromkeys(va["image_location"].str.split("/").str[0]))
    assert p_va(frame_labels(demo_run, "va", "test", videos, root), va[["valence", "arousal"]].to_numpy()) > 0.8
    expr_labels = frame_labels(demo_run, "expr", "test", videos, root)
    predicted = expr.drop(columns="image_location").to_numpy().argmax(axis=1) if expr.shape[1] > 2 else \
        expr.iloc[:, 1].to_numpy()
    # Eight classes: chance is about 0.125. On the deterministic demo corpus the pipeline scores 0.56.
    assert macro_f1(expr_labels, predicted) > 0.4


def test_changing_the_hamming_window_reruns_only_smoothing_and_after(demo_run):
    config = yaml.safe_load((demo_run / "config" / "config.yaml").read_text())
    config["postprocess"]["hamming_s"] = 1.0
    changed = demo_run / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))  # sorted keys: order must not matter
    assert "Nothing to be done" in snakemake(demo_run, "-n").stdout
    jobs = planned_jobs(snakemake(demo_run, "-n", "--configfile", str(changed)).stdout)
    assert set(jobs) == {"smooth_predictions", "fuse", "submission", "metrics_table", "validation_figures", "runtimes",
                         "all"}
    # 4 of the 5 models smooth with a Hamming window (visual_linear uses a box filter): 2 tasks x 2 splits each
    assert jobs["smooth_predictions"] == 16


def test_a_new_audio_rate_reruns_the_audio_stages_and_not_the_face_stages(demo_run):
    config = yaml.safe_load((demo_run / "config" / "config.yaml").read_text())
    config["audio"]["sample_rate"] = 8000
    (demo_run / "audio_rate.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(demo_run, "-n", "--configfile", "audio_rate.yaml").stdout)
    everything = planned_jobs(snakemake(demo_run, "-n", "--forceall").stdout)
    # ingest_video writes the probe again with the audio; the face stages read it as ancient
    assert jobs["ingest_video"] == everything["ingest_video"]
    assert jobs["audio_embeddings"] == everything["audio_embeddings"]
    assert not {"detect_faces", "face_landmarks", "face_embeddings"} & set(jobs)
    audio_windows = sum(len(spec["windows_s"]) for spec in config["models"].values() if spec["modality"] == "audio")
    assert jobs["train"] == audio_windows * len(config["tasks"])


def test_a_corrupt_video_is_named_and_other_videos_are_kept(demo_run, tmp_path):
    workdir = make_workdir(tmp_path)
    corpus = tmp_path / "corpus"
    shutil.copytree(demo_run / "results" / "demo_corpus", corpus)
    bad = corpus / "videos" / "demo05.mp4"
    bad.write_bytes(bad.read_bytes()[:3000])
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["corpus"] = {"root": str(corpus), "demo": False, "demo_test_labels": "unused"}
    (workdir / "user.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--configfile", "user.yaml", "--keep-going", check=False)
    assert result.returncode != 0
    assert "demo05.mp4" in result.stdout + result.stderr
    log = (workdir / "results" / "logs" / "ingest_video" / "demo05.log").read_text()
    assert "demo05.mp4" in log
    for video in [f"demo{i:02d}" for i in range(1, 15) if i != 5]:
        for stage in ("embeddings/face/landmarks", "embeddings/audio/logmel", "vad"):
            assert (workdir / "results" / stage / f"{video}.parquet").is_file(), (stage, video)
    assert not (workdir / "results" / "probe" / "demo05.json").exists()


def test_spleeter_plans_its_venv_checkpoint_and_separation(tmp_path):
    workdir = make_workdir(tmp_path)
    result = snakemake(workdir, "-n", "-p", "results/audio/vocals/demo01.wav", "--config",
                       "separation={'method': 'spleeter'}")
    assert planned_jobs(result.stdout) == {"build_demo_corpus": 1, "ingest_video": 1,
                                           "fetch_resource": 1, "unpack_spleeter_model": 1, "build_venv": 1,
                                           "separate_vocals": 1}
    assert ".snakemake/venvs/spleeter/bin/python" in result.stdout
    (workdir / "overlap.yaml").write_text("separation: {method: spleeter, spleeter: {chunk_s: 1.0, overlap_s: 1.0}}\n")
    overlapping = snakemake(workdir, "-n", "--configfile", "overlap.yaml", check=False)
    assert overlapping.returncode != 0
    assert "overlap_s must be shorter than chunk_s" in overlapping.stdout + overlapping.stderr


E2E_MODEL = {"family": "audio_gru", "modality": "audio", "extractor": "waveform", "finetune_layers": 1,
             "windows_s": [4.0], "loss": "ccc", "smoothing": "hamming"}


def pdem_stand_in(shared: Path, workdir: Path, mirror: Path) -> None:
    """The PDEM release in the mirror as a stand-in of the same format: the real weights cannot be had here,
    so the release's config is shrunk to 2 layers of width 64 and the weights are random. The workdir's
    manifest pins the shrunk config (the real one's digest cannot match it); the preprocessor config is the
    release's own file."""
    from avaffect.audio.pdem import build_pdem, save_pdem_weights

    small_pdem_config(shared, mirror / "pdem-config")
    torch.manual_seed(0)
    model, _ = build_pdem(mirror / "pdem-config")
    (mirror / "pdem").mkdir()
    save_pdem_weights(model, mirror / "pdem" / "model.safetensors")
    manifest_file = workdir / "resources" / "manifest.yaml"
    manifest = yaml.safe_load(manifest_file.read_text())
    manifest["pdem_config"]["sha256"] = sha256_of(mirror / "pdem-config" / "config.json")
    manifest_file.write_text(yaml.safe_dump(manifest, sort_keys=False))


E2E_CONFIG = {"tasks": ["va"], "models": {"audio_e2e": E2E_MODEL},
              "end_to_end": {"epochs": 1, "batch_size": 4, "augment": True}}
E2E_TARGETS = [f"results/predictions/audio_e2e/va/{split}.parquet" for split in ("validation", "test")]


def test_an_end_to_end_model_has_its_own_rules_beside_the_embedding_models(tmp_path):
    workdir = make_workdir(tmp_path)
    (workdir / "e2e.yaml").write_text(yaml.safe_dump(E2E_CONFIG))
    jobs = planned_jobs(snakemake(workdir, "-n", *E2E_TARGETS, "--configfile", "e2e.yaml").stdout)
    # its own rules, not those of the models over embeddings, and the release's three files
    assert jobs["train_end_to_end"] == jobs["select_window"] == 1 and jobs["predict_end_to_end"] == 2
    assert jobs["fetch_resource"] == 3 and not {"train", "predict", "sample_set", "audio_embeddings"} & set(jobs)
    everything = planned_jobs(snakemake(workdir, "-n", "--configfile", "e2e.yaml").stdout)
    defaults = yaml.safe_load((workdir / "config" / "config.yaml").read_text())["models"]
    assert everything["train_end_to_end"] == 1
    assert everything["train"] == sum(len(spec["windows_s"]) for spec in defaults.values())
    # fusion takes its predictions like any model's
    fusion = snakemake(workdir, "-n", "results/fusion/va/swf/validation.parquet", "--configfile", "e2e.yaml").stdout
    assert planned_jobs(fusion)["predict_end_to_end"] == 2 and E2E_TARGETS[1] in fusion.split("rule fuse:")[1]


@pytest.mark.skipif(os.environ.get("AVAFFECT_TEST_END_TO_END") != "1",
                    reason="the demo front end and an end-to-end model: about 10 min on 2 cores; set "
                           "AVAFFECT_TEST_END_TO_END=1")
def test_an_end_to_end_audio_model_trains_and_predicts_into_the_fusion_inputs(shared, tmp_path):
    workdir, mirror = mirrored_workdir(tmp_path, "pdem-config", "e2e.yaml", E2E_CONFIG, "pdem_weights")
    pdem_stand_in(shared, workdir, mirror)
    started = time.monotonic()
    snakemake(workdir, *E2E_TARGETS, "--configfile", "e2e.yaml")
    print(f"end-to-end model, demo corpus: {time.monotonic() - started:.0f} s")
    checkpoint = torch.load(workdir / "results" / "models" / "audio_e2e" / "va" / "w4" / "checkpoint.pt",
                            weights_only=True)
    assert checkpoint["finetune_layers"] == 1 and set(checkpoint["top_layers"]) and checkpoint["family"] == "audio_gru"
    metrics = json.loads((workdir / "results" / "models" / "audio_e2e" / "va" / "w4" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["train_windows"] > 0
    raw = pd.read_parquet(workdir / "results" / "predictions" / "raw" / "audio_e2e" / "va" / "w4" /
                          "validation.parquet")
    assert list(raw.columns) == ["video", "frame", "time_s", "valence", "arousal"]
    assert len(raw) and np.isfinite(raw[["valence", "arousal"]].to_numpy()).all()
    assert (raw[["valence", "arousal"]].abs() <= 1).all().all()
    smoothed = pd.read_parquet(workdir / E2E_TARGETS[0])
    assert set(smoothed["video"]) <= set(demo_manifest(workdir / "results" / "demo_corpus").samples["va"]["validation"])
    log = (workdir / "results" / "logs" / "train" / "audio_e2e" / "va" / "w4.log").read_text()
    assert "training audio_gru on the last 1 of 2 PDEM layers" in log


def test_submission_follows_the_organisers_sample_file_and_refuses_unknown_frames(demo_run):
    rows = read_submission(demo_run / "results" / "submission_va.txt", "va")["image_location"].tolist()
    sample = demo_run / "sample_va.txt"
    sample.write_text("\n".join(["image_location,valence,arousal", *[f"{r},0,0" for r in reversed(rows)]]) + "\n")
    config = yaml.safe_load((demo_run / "config" / "config.yaml").read_text())
    config["submission"]["sample_files"]["va"] = str(sample)
    (demo_run / "sample.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake(demo_run, "results/submission_va.txt", "--configfile", "sample.yaml")
    followed = read_submission(demo_run / "results" / "submission_va.txt", "va")
    assert followed["image_location"].tolist() == rows[::-1]
    sample.write_text(sample.read_text() + "demo12/99999.jpg,0,0\n")
    failed = snakemake(demo_run, "results/submission_va.txt", "--configfile", "sample.yaml", check=False)
    assert failed.returncode != 0 and "demo12/99999.jpg" in failed.stdout + failed.stderr
    # the failed job removed the submission; later tests share this run and need it back
    snakemake(demo_run, "results/submission_va.txt")


PER_VIDEO_RULES = {"ingest_video", "detect_faces", "face_landmarks", "voice_activity",
                   "face_embeddings", "audio_embeddings"}


def test_adding_a_video_runs_only_its_front_end_and_the_models_after_it(demo_run):
    corpus = demo_run / "results" / "demo_corpus"
    config = yaml.safe_load((demo_run / "config" / "config.yaml").read_text())
    config["corpus"] = {"root": "results/demo_corpus", "demo": False, "demo_test_labels": "unused"}
    (demo_run / "own_corpus.yaml").write_text(yaml.safe_dump(config))
    # the same files read as a user's corpus: nothing changes
    assert "Nothing to be done" in snakemake(demo_run, "-n", "--configfile", "own_corpus.yaml").stdout
    everything = planned_jobs(snakemake(demo_run, "-n", "--forceall", "--configfile", "own_corpus.yaml").stdout)
    added = demo.DemoVideo("demo15", "train", demo.Fraction(25), 4.0, 15)
    files = [corpus / "videos" / "demo15.mp4", *(annotation_path(corpus, t, "train", "demo15") for t in ("va", "expr"))]
    try:
        demo.write_video(files[0], added)
        demo.write_annotations(corpus, added, "train")
        jobs = planned_jobs(snakemake(demo_run, "-n", "--configfile", "own_corpus.yaml").stdout)
    finally:
        for path in files:
            path.unlink(missing_ok=True)
    assert {rule: jobs[rule] for rule in PER_VIDEO_RULES} == dict.fromkeys(PER_VIDEO_RULES, 1)
    # of the sample sets, only the training split's (one per extractor and task) lists the new video
    assert jobs["sample_set"] == everything["sample_set"] // len(SPLITS)
    # a new training video changes every model, and so everything after training
    assert {rule: n for rule, n in jobs.items() if rule not in {*PER_VIDEO_RULES, "sample_set"}} == \
        {rule: n for rule, n in everything.items() if rule not in {*PER_VIDEO_RULES, "sample_set"}}
    assert everything["train"] > 1 and everything["ingest_video"] == len(demo.DEMO_VIDEOS)



def test_a_target_outside_the_corpus_is_an_error_naming_it(demo_run):
    result = snakemake(demo_run, "-n", "results/faces/not_in_corpus.parquet", check=False)
    assert result.returncode != 0
    assert "not_in_corpus: no such video in the corpus" in result.stdout + result.stderr


def test_audio_augmentation_embeds_copies_of_the_training_audio_for_the_audio_models(demo_run):
    config = yaml.safe_load((demo_run / "config" / "config.yaml").read_text())
    config["augmentation"] |= {"copies": 2, "noise_p": 1.0}
    (demo_run / "augmented.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(snakemake(demo_run, "-n", "--configfile", "augmented.yaml").stdout)
    manifest = demo_manifest(demo_run / "results" / "demo_corpus")
    train = sorted({s for task in config["tasks"] for s in manifest.samples[task]["train"]})
    audio_models = [m for m in config["models"].values() if m["modality"] == "audio"]
    assert jobs["audio_embeddings_augmented"] == len(train)  # one job embeds both copies of a sample
    assert jobs["train"] == len(config["tasks"]) * sum(len(m["windows_s"]) for m in audio_models)
    assert "face_embeddings" not in jobs and "audio_embeddings" not in jobs
    probes = {s: json.loads((demo_run / "results" / "probe" / f"{s}.json").read_text()) for s in train}
    sample = next(s for s in train if probes[s]["has_audio"])
    copies = [f"results/embeddings/audio/logmel/augmented/{copy}/{sample}.parquet" for copy in (1, 2)]
    snakemake(demo_run, "--configfile=augmented.yaml", copies[0])
    original = pd.read_parquet(demo_run / "results" / "embeddings" / "audio" / "logmel" / f"{sample}.parquet")
    embedded = [original, *(pd.read_parquet(demo_run / copy) for copy in copies)]
    for augmented in embedded[1:]:
        assert augmented[["frame", "window"]].equals(original[["frame", "window"]])
    for a, b in ((0, 1), (0, 2), (1, 2)):  # each copy is drawn afresh
        assert not np.allclose(np.stack(embedded[a]["embedding"]), np.stack(embedded[b]["embedding"]))


def test_long_jobs_log_their_progress(demo_run):
    logs = demo_run / "results" / "logs"
    detection = (logs / "detect_faces" / "demo01.log").read_text()
    frames = json.loads((demo_run / "results" / "probe" / "demo01.json").read_text())["n_frames"]
    assert re.search(rf"face detection: {frames} of {frames} frames \(100%\), [\d.]+ frames/s, took \d+ s", detection)
    training = next((logs / "train" / "visual" / "va").glob("w*.log")).read_text()
    epochs = re.findall(r"training: (\d+) of at most (\d+) epochs .*(?:left|took)", training)
    assert epochs and [int(done) for done, _ in epochs] == list(range(1, len(epochs) + 1))
