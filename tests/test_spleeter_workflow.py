"""The whole Spleeter rule path: rule build_venv builds the venv from envs/spleeter.yaml (pip downloads
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
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from test_workflow import mirrored_workdir, snakemake

from avaffect.audio.separation import unpack_checkpoint
from avaffect.media.wav import read_wav

pytestmark = [
    pytest.mark.workflow,
    pytest.mark.spleeter,
    pytest.mark.skipif(os.environ.get("AVAFFECT_TEST_SPLEETER") != "1",
                       reason="builds the Spleeter venv (pip, TensorFlow, minutes): set AVAFFECT_TEST_SPLEETER=1"),
]
VENV_READY = ".snakemake/venvs/spleeter/pins.txt"
VENV_PYTHON = ".snakemake/venvs/spleeter/bin/python"
VOICED, SILENT = "demo09", "demo13"  # 10 s of audio; a video without audio


def write_untrained_checkpoint(workdir: Path, archive: Path, seed: int) -> None:
    subprocess.run([workdir / VENV_PYTHON, REPO / "tests" / "spleeter_untrained_checkpoint.py", archive, str(seed)],
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def spleeter_run(tmp_path_factory):
    workdir, mirror = mirrored_workdir(
        tmp_path_factory.mktemp("spleeter"), "spleeter", "spleeter.yaml",
        {"separation": {"method": "spleeter", "spleeter": {"chunk_s": 4.0, "overlap_s": 0.5}}}, "spleeter_2stems")
    started = time.monotonic()
    snakemake(workdir, VENV_READY, "--configfile", "spleeter.yaml")
    print(f"build_venv spleeter: {time.monotonic() - started:.0f} s")
    write_untrained_checkpoint(workdir, mirror / "spleeter" / "2stems.tar.gz", seed=1)
    targets = [f"results/audio/vocals/{v}.wav" for v in (VOICED, SILENT)]
    snakemake(workdir, *targets, "--configfile", "spleeter.yaml")
    return workdir


def separate_directly(workdir: Path, model_dir: Path, output: Path) -> subprocess.CompletedProcess:
    """The rule's script run by hand with the venv's Python, on another model folder."""
    return subprocess.run(
        [workdir / VENV_PYTHON, REPO / "workflow" / "scripts" / "separate_vocals_spleeter.py",
         workdir / "results" / "audio" / "raw" / f"{VOICED}.wav", model_dir, output,
         "--log", output.with_suffix(".log"), "--chunk-s", "4", "--overlap-s", "0.5"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})


def test_vocals_are_16k_mono_as_long_as_the_audio(spleeter_run):
    raw, raw_rate = read_wav(spleeter_run / "results" / "audio" / "raw" / f"{VOICED}.wav")
    vocals, rate = read_wav(spleeter_run / "results" / "audio" / "vocals" / f"{VOICED}.wav")
    assert rate == raw_rate == 16000 and len(vocals) == len(raw) > 0
    assert np.abs(vocals).max() > 0 and not np.allclose(vocals, raw, atol=1e-3)
    log = (spleeter_run / "results" / "logs" / "separate_vocals" / f"{VOICED}.log").read_text()
    assert "checkpoint files match" in log and "chunks of 4 s" in log
    silent, _ = read_wav(spleeter_run / "results" / "audio" / "vocals" / f"{SILENT}.wav")
    assert len(silent) == 0


def test_the_separation_uses_the_checkpoint_weights(spleeter_run, tmp_path):
    """Spleeter's own initialisation is seeded (he_uniform, seed 50), so random weights would give the same
    vocals every time: another checkpoint must give other vocals."""
    archive = tmp_path / "2stems.tar.gz"
    write_untrained_checkpoint(spleeter_run, archive, seed=2)
    unpack_checkpoint(archive, tmp_path / "2stems")
    result = separate_directly(spleeter_run, tmp_path / "2stems", tmp_path / "vocals.wav")
    assert result.returncode == 0, result.stderr[-2000:]
    other, _ = read_wav(tmp_path / "vocals.wav")
    vocals, _ = read_wav(spleeter_run / "results" / "audio" / "vocals" / f"{VOICED}.wav")
    assert len(other) == len(vocals) and not np.allclose(other, vocals, atol=1e-3)


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
    result = separate_directly(spleeter_run, empty, tmp_path / "vocals.wav")
    assert result.returncode != 0 and f"{empty}: SHA256SUMS missing" in result.stderr
    assert not (tmp_path / "vocals.wav").exists()
