"""The whole Spleeter rule path: rule spleeter_venv builds the venv from envs/spleeter.yaml (pip downloads
TensorFlow: several minutes), fetch_resource takes the 2stems tarball from a mirror (accepted unpinned), rule
unpack_spleeter_model unpacks it, and separate_vocals runs Spleeter on demo audio in chunks.

The real 2stems weights cannot be had here, so the mirror holds an untrained checkpoint in Spleeter's own
format, written by tests/spleeter_untrained_checkpoint.py (Spleeter's graph, seeded random weights, saved by
TensorFlow): the loading path is the real one, the vocals are not meaningful.

Opt-in, because of the venv build: AVAFFECT_TEST_SPLEETER=1 .venv/bin/python -m pytest tests/test_spleeter_workflow.py
"""

import os
import subprocess
import time

import numpy as np
import pytest
import yaml
from conftest import REPO
from test_workflow import make_workdir, snakemake

from avaffect.media import read_wav

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.spleeter,
    pytest.mark.skipif(os.environ.get("AVAFFECT_TEST_SPLEETER") != "1",
                       reason="builds the Spleeter venv (pip, TensorFlow, minutes): set AVAFFECT_TEST_SPLEETER=1"),
]
VENV_READY = ".snakemake/venvs/spleeter/pins.txt"
VOICED, SILENT = "demo09", "demo13"  # 10 s of audio; a video without audio


@pytest.fixture(scope="module")
def spleeter_run(tmp_path_factory):
    workdir = make_workdir(tmp_path_factory.mktemp("spleeter"))
    mirror = workdir / "mirror"
    (mirror / "spleeter").mkdir(parents=True)
    (workdir / "spleeter.yaml").write_text(yaml.safe_dump({
        "resources": {"mirror": str(mirror), "accept_unpinned": ["spleeter_2stems"]},
        "separation": {"method": "spleeter", "spleeter": {"chunk_s": 4.0, "overlap_s": 0.5}},
    }))
    started = time.monotonic()
    snakemake(workdir, VENV_READY, "--configfile", "spleeter.yaml")
    print(f"spleeter_venv: {time.monotonic() - started:.0f} s")
    python = workdir / ".snakemake" / "venvs" / "spleeter" / "bin" / "python"
    subprocess.run([python, REPO / "tests" / "spleeter_untrained_checkpoint.py", mirror / "spleeter" / "2stems.tar.gz",
                    "1"], check=True, capture_output=True)
    targets = [f"results/audio/vocals/{v}.wav" for v in (VOICED, SILENT)]
    snakemake(workdir, *targets, "--configfile", "spleeter.yaml")
    return workdir


def test_vocals_are_16k_mono_as_long_as_the_audio_and_use_the_checkpoint(spleeter_run):
    raw, raw_rate = read_wav(spleeter_run / "results" / "audio" / "raw" / f"{VOICED}.wav")
    vocals_path = spleeter_run / "results" / "audio" / "vocals" / f"{VOICED}.wav"
    vocals, rate = read_wav(vocals_path)
    assert rate == raw_rate == 16000 and len(vocals) == len(raw) > 0
    assert np.abs(vocals).max() > 0 and not np.allclose(vocals, raw, atol=1e-3)
    log = (spleeter_run / "results" / "logs" / "separate_vocals" / f"{VOICED}.log").read_text()
    assert "checkpoint files match" in log and "chunks of 4 s" in log
    silent, _ = read_wav(spleeter_run / "results" / "audio" / "vocals" / f"{SILENT}.wav")
    assert len(silent) == 0
    # Spleeter without a checkpoint initialises at random on every run; restored weights give the same vocals.
    first = vocals_path.read_bytes()
    snakemake(spleeter_run, str(vocals_path.relative_to(spleeter_run)), "--configfile", "spleeter.yaml",
              "--forcerun", "separate_vocals")
    assert vocals_path.read_bytes() == first


def test_a_corrupt_checkpoint_file_stops_separation_with_its_name(spleeter_run):
    data = spleeter_run / "resources" / "spleeter" / "2stems" / "model.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:1000])
    target = f"results/audio/vocals/{VOICED}.wav"
    failed = snakemake(spleeter_run, target, "--configfile", "spleeter.yaml", "--forcerun", "separate_vocals",
                       check=False)
    assert failed.returncode != 0
    assert f"{data}: sha256" in failed.stdout + failed.stderr and "random weights" in failed.stdout + failed.stderr
    data.unlink()  # a missing file is unpacked again from the checked tarball
    snakemake(spleeter_run, target, "--configfile", "spleeter.yaml")
    assert len(read_wav(spleeter_run / target)[0]) > 0


def test_an_empty_model_folder_is_refused_by_the_separation_script(spleeter_run, tmp_path):
    empty = tmp_path / "2stems"
    empty.mkdir()
    python = spleeter_run / ".snakemake" / "venvs" / "spleeter" / "bin" / "python"
    result = subprocess.run(
        [python, REPO / "workflow" / "scripts" / "separate_vocals_spleeter.py",
         spleeter_run / "results" / "audio" / "raw" / f"{VOICED}.wav", empty, tmp_path / "vocals.wav",
         "--log", tmp_path / "log", "--chunk-s", "4", "--overlap-s", "0.5"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert result.returncode != 0 and f"{empty}: SHA256SUMS missing" in result.stderr
    assert not (tmp_path / "vocals.wav").exists()
