"""The workflow on a real single-node SLURM cluster through profiles/slurm, from nothing to both submissions.

tests/slurm/start_slurm.sh brings SLURM up (root: it installs the Debian packages and starts munged, slurmctld
and slurmd). To keep CI short the run uses two quick models, one per modality (KELM on face and on audio
embeddings) and one fusion method; everything else is the default config. Every job goes through sbatch:
the demo corpus, the seven per-video rules of all 14 videos (bundled by the profile's groups into
ceil(14 / 5) SLURM jobs), training, prediction, window selection, smoothing, fusion and both submissions.
"""

import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from avaffect.corpus.demo import demo_manifest
from avaffect.corpus.layout import video_of
from avaffect.fusion.submission import expected_rows, read_submission, validate
from avaffect.tools.workdir import copy_workflow, planned_jobs

pytestmark = [pytest.mark.workflow, pytest.mark.slurm]

START_SLURM = REPO / "tests" / "slurm" / "start_slurm.sh"
STOP_SLURM = REPO / "tests" / "slurm" / "stop_slurm.sh"
NOT_ROOT = 2  # start_slurm.sh's exit status when SLURM is down and it may not start it
VIDEOS_PER_JOB = 5
# Rules with `localrule: True` run on the submitting host: no SLURM job, no plugin log.
LOCAL_RULES = {"sample_set"}
PER_VIDEO_RULES = {"ingest_video", "detect_faces", "face_landmarks", "voice_activity",
                   "face_embeddings", "audio_embeddings"}
MODELS = {
    "visual_kelm": {"family": "kelm", "modality": "face", "extractor": "landmarks", "windows_s": [2.0],
                    "normalization": "zscore", "loss": "mse", "smoothing": "hamming"},
    "audio_kelm": {"family": "kelm", "modality": "audio", "extractor": "logmel", "windows_s": [2.0],
                   "normalization": "zscore", "loss": "mse", "smoothing": "hamming"},
}


@pytest.fixture(scope="module")
def slurm_conf() -> Iterator[Path]:
    if not shutil.which("sinfo") and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    started = subprocess.run(["bash", str(START_SLURM)], capture_output=True, text=True)
    if started.returncode == NOT_ROOT:
        pytest.skip(f"SLURM is down and starting it needs root: {started.stderr.strip()}")
    assert started.returncode == 0, f"start_slurm.sh failed:\n{started.stderr[-4000:]}"
    yield Path(started.stdout.strip())
    # A cluster this test started goes down with it; one that was already up stays up.
    if "already up" not in started.stderr:
        subprocess.run(["bash", str(STOP_SLURM)], check=True)


@pytest.fixture(scope="module")
def slurm_run(slurm_conf, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    workdir = copy_workflow(REPO, tmp_path_factory.mktemp("slurm"))
    shutil.copytree(REPO / "profiles" / "slurm", workdir / "profiles" / "slurm")
    config_path = workdir / "config" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    # config/config.yaml itself: models are a mapping and --configfile would merge into the default models
    config["models"] = MODELS
    config["systems"] = {"kelm_swf": {"models": list(MODELS), "method": "swf"}}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
        "--cores", "2",  # the node's CPUs: a group job asks for at most this many
        "--group-components", f"per_video={VIDEOS_PER_JOB}",
        "--slurm-init-seconds-before-status-checks", "5",
        "--slurm-keep-successful-logs",
        "results/submission_va.txt", "results/submission_expr.txt",
    ]
    planned = subprocess.run([*command, "-n"], cwd=workdir, capture_output=True, text=True)
    assert planned.returncode == 0, planned.stdout[-4000:] + planned.stderr[-4000:]
    ran = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    assert ran.returncode == 0, f"snakemake failed:\n{ran.stdout[-6000:]}\n{ran.stderr[-6000:]}"
    return workdir, planned, ran


def frame_counts(workdir: Path, samples: list[str]) -> dict[str, int]:
    return {s: json.loads((workdir / "results" / "probe" / f"{video_of(s)}.json").read_text())["n_frames"]
            for s in samples}


def test_both_submissions_are_written_and_valid(slurm_run):
    workdir, _, _ = slurm_run
    manifest = demo_manifest(workdir / "results" / "demo_corpus")
    for task in ("va", "expr"):
        path = workdir / "results" / f"submission_{task}.txt"
        table = read_submission(path, task)
        validate(table, task, expected_rows(frame_counts(workdir, manifest.samples[task]["test"])), str(path))


def test_every_job_ran_as_a_slurm_job_with_per_video_rules_grouped(slurm_run, slurm_conf):
    workdir, planned, _ = slurm_run
    jobs = planned_jobs(planned.stdout)
    videos = sorted(demo_manifest(workdir / "results" / "demo_corpus").videos)
    assert {jobs[rule] for rule in PER_VIDEO_RULES} == {len(videos)}
    logs = workdir / ".snakemake" / "slurm_logs"
    # the plugin names a group's log folder after the group and its rules
    group_logs = sorted(path for folder in logs.glob("group_per_video_*") for path in folder.rglob("*.log"))
    assert len(group_logs) == math.ceil(len(videos) / VIDEOS_PER_JOB)
    rule_logs = {rule: sorted((logs / f"rule_{rule}").rglob("*.log"))
                 for rule in set(jobs) - PER_VIDEO_RULES - LOCAL_RULES}
    assert {rule: len(found) for rule, found in rule_logs.items()} == {rule: jobs[rule] for rule in rule_logs}
    assert not any((logs / f"rule_{rule}").exists() for rule in PER_VIDEO_RULES | LOCAL_RULES)
    assert len(list((workdir / "results" / "sets").rglob("*.json"))) == jobs["sample_set"]
    # SLURM names each log after its job id; slurmctld logged every one of them as finished with status 0
    job_ids = {path.stem for path in group_logs} | {path.stem for found in rule_logs.values() for path in found}
    controller_log = (slurm_conf.parent / "slurmctld.log").read_text()
    completed = set(re.findall(r"_job_complete: JobId=(\d+) WEXITSTATUS 0", controller_log))
    assert job_ids <= completed, sorted(job_ids - completed)
    for video in videos:
        for stage in ("embeddings/face/landmarks", "embeddings/audio/logmel"):
            assert (workdir / "results" / stage / f"{video}.parquet").is_file(), (stage, video)
