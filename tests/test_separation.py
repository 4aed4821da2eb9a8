"""Vocal separation around Spleeter: resampling, chunking, joining, checkpoint checks, the Spleeter venv.
None of this needs TensorFlow; tests/test_spleeter_workflow.py runs the real model path."""

import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from avaffect.audio.separation import (
    DIGESTS_FILE,
    SPLEETER_CHECKPOINT_FILES,
    SeparationError,
    chunk_spans,
    join_chunks,
    resample,
    separate_vocals,
    unpack_checkpoint,
    verify_checkpoint,
)
from avaffect.core.venvs import READY_FILE, VenvError, build_venv, pip_pins, python_version

RATE, MODEL_RATE = 16000, 44100


def tone(seconds: float, rate: int = RATE, hz: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * hz * np.arange(round(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 159, 16000, 16001, 160125])
def test_resampling_round_trip_keeps_the_length(n):
    up = resample(np.zeros(n, np.float32), RATE, MODEL_RATE)
    assert len(up) == int(np.ceil(n * MODEL_RATE / RATE))
    assert len(resample(up, MODEL_RATE, RATE, length=n)) == n


def test_resampling_round_trip_keeps_a_tone():
    samples = tone(2.0)
    up = resample(samples, RATE, MODEL_RATE)
    assert len(up) == 2 * MODEL_RATE
    back = resample(up, MODEL_RATE, RATE, length=len(samples))
    inner = slice(RATE // 10, -RATE // 10)  # the filter's edge transients
    np.testing.assert_allclose(back[inner], samples[inner], atol=2e-3)
    spectrum = np.abs(np.fft.rfft(up))
    assert np.argmax(spectrum) * MODEL_RATE / len(up) == pytest.approx(440.0, abs=1.0)


def test_chunk_spans_cover_everything_with_overlaps():
    assert chunk_spans(10, 4, 1) == [(0, 5), (4, 9), (8, 10)]
    assert chunk_spans(9, 4, 1) == [(0, 5), (4, 9)]
    assert chunk_spans(5, 4, 1) == [(0, 5)]
    assert chunk_spans(3, 4, 0) == [(0, 3)]
    assert chunk_spans(8, 4, 0) == [(0, 4), (4, 8)]
    for n in range(1, 60):
        spans = chunk_spans(n, 7, 3)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(b[0] == a[0] + 7 and a[1] - b[0] == 3 for a, b in zip(spans, spans[1:], strict=False))
        assert all(end - start > 3 for start, end in spans[1:])
    with pytest.raises(ValueError, match="shorter than the chunk"):
        chunk_spans(10, 4, 4)


def test_joining_agreeing_pieces_gives_back_the_signal():
    signal = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    spans = chunk_spans(50, 12, 5)
    joined = join_chunks([signal[s:e] for s, e in spans], spans, 5)
    np.testing.assert_allclose(joined, signal, atol=1e-6)


def test_joining_cross_fades_disagreeing_pieces():
    spans = chunk_spans(8, 4, 2)
    joined = join_chunks([np.zeros(6, np.float32), np.ones(4, np.float32)], spans, 2)
    np.testing.assert_allclose(joined, [0, 0, 0, 0, 0.25, 0.75, 1, 1])


def test_separation_in_chunks_matches_one_piece_and_bounds_the_model_input():
    samples = tone(10.0) * np.linspace(0, 1, 10 * RATE, dtype=np.float32)
    seen = []

    def halve(stereo):
        seen.append(stereo.shape)
        assert np.array_equal(stereo[:, 0], stereo[:, 1])
        return stereo / 2

    whole = separate_vocals(samples, RATE, halve, MODEL_RATE, chunk_s=20.0, overlap_s=1.0)
    chunked = separate_vocals(samples, RATE, halve, MODEL_RATE, chunk_s=3.0, overlap_s=0.5)
    assert whole.dtype == np.float32 and len(whole) == len(chunked) == len(samples)
    assert max(length for length, _ in seen[1:]) <= np.ceil(3.5 * MODEL_RATE)
    assert len(seen) == 1 + 4
    inner = slice(RATE // 10, -RATE // 10)
    np.testing.assert_allclose(whole[inner], samples[inner] / 2, atol=2e-3)
    np.testing.assert_allclose(chunked, whole, atol=5e-3)


def test_separation_of_no_audio_is_empty_and_a_misshapen_result_is_refused():
    assert len(separate_vocals(np.zeros(0, np.float32), RATE, lambda s: s, MODEL_RATE, 10.0, 1.0)) == 0
    with pytest.raises(SeparationError, match="shape"):
        separate_vocals(tone(1.0), RATE, lambda s: s[:-1], MODEL_RATE, 10.0, 1.0)


def checkpoint_archive(path: Path, names=SPLEETER_CHECKPOINT_FILES, folder: str = "") -> Path:
    contents = {name: f"{name} bytes".encode() for name in names}
    contents["checkpoint"] = b'model_checkpoint_path: "model"\nall_model_checkpoint_paths: "model"\n'
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(f"{folder}{name}")
            info.size = len(contents[name])
            archive.addfile(info, io.BytesIO(contents[name]))
    return path


def test_unpacking_writes_the_checkpoint_and_its_digests(tmp_path):
    model_dir = tmp_path / "2stems"
    digests = unpack_checkpoint(checkpoint_archive(tmp_path / "2stems.tar.gz", folder="./"), model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == sorted([*SPLEETER_CHECKPOINT_FILES, DIGESTS_FILE])
    assert digests["model.index"] == hashlib.sha256(b"model.index bytes").hexdigest()
    assert verify_checkpoint(model_dir) == model_dir / "model"


def test_an_archive_without_the_checkpoint_is_refused(tmp_path):
    archive = checkpoint_archive(tmp_path / "2stems.tar.gz", names=SPLEETER_CHECKPOINT_FILES[:3])
    with pytest.raises(SeparationError, match=r"2stems.tar.gz: not a Spleeter checkpoint archive, it lacks model.meta"):
        unpack_checkpoint(archive, tmp_path / "2stems")
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(SeparationError, match="junk.tar.gz: not a readable tar archive"):
        unpack_checkpoint(tmp_path / "junk.tar.gz", tmp_path / "2stems")


def test_an_empty_model_folder_is_refused_not_run_with_random_weights(tmp_path):
    (tmp_path / "2stems").mkdir()
    with pytest.raises(SeparationError, match=rf"{tmp_path / '2stems'}: SHA256SUMS missing.*random weights"):
        verify_checkpoint(tmp_path / "2stems")


@pytest.mark.parametrize("damage", ["delete", "empty", "change"])
def test_a_missing_or_changed_checkpoint_file_is_named(tmp_path, damage):
    model_dir = tmp_path / "2stems"
    unpack_checkpoint(checkpoint_archive(tmp_path / "2stems.tar.gz"), model_dir)
    target = model_dir / "model.data-00000-of-00001"
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(b"" if damage == "empty" else b"other weights")
    expected = (rf"{model_dir}: checkpoint file model.data-00000-of-00001 is missing or empty"
                if damage != "change" else rf"{target}: sha256 [0-9a-f]{{64}} is not")
    with pytest.raises(SeparationError, match=expected):
        verify_checkpoint(model_dir)


def test_a_checkpoint_index_pointing_elsewhere_is_refused(tmp_path):
    model_dir = tmp_path / "2stems"
    unpack_checkpoint(checkpoint_archive(tmp_path / "2stems.tar.gz"), model_dir)
    (model_dir / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/model"\n')
    (model_dir / DIGESTS_FILE).write_text("".join(
        f"{hashlib.sha256((model_dir / n).read_bytes()).hexdigest()}  {n}\n" for n in SPLEETER_CHECKPOINT_FILES))
    with pytest.raises(SeparationError, match="names checkpoint '/elsewhere/model'"):
        verify_checkpoint(model_dir)


def test_spleeter_env_pins_are_exact_and_python_3_11():
    pins = dict(pin.split("==") for pin in pip_pins(REPO / "envs" / "spleeter.yaml"))
    assert python_version(REPO / "envs" / "spleeter.yaml") == "3.11"
    assert pins["spleeter"] == "2.4.2" and pins["tensorflow"] == "2.12.1"
    assert int(pins["numpy"].split(".")[0]) < 2
    main = dict(pin.split("==") for pin in pip_pins(REPO / "envs" / "main.yaml"))
    assert {name: pins[name] for name in ("av", "pyyaml")} == {name: main[name] for name in ("av", "pyyaml")}


def test_loose_pins_are_refused(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("dependencies:\n  - python=3.11\n  - pip:\n      - numpy>=1.0\n")
    with pytest.raises(VenvError, match=r"env.yaml: pins must be exact \(name==version\), not numpy>=1.0"):
        pip_pins(env)


def test_venv_build_installs_the_pins_and_marks_it_ready_last(tmp_path):
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0 if len(calls) == 1 else 1)

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    venv, log = tmp_path / "venv", tmp_path / "build.log"
    with pytest.raises(VenvError, match=r"venv: .*pip install.* failed \(see .*build.log\); the pins come from env"):
        build_venv(venv, ["a==1", "b==2"], version, "env", log, run)
    assert calls[0][-3:] == ["venv", "--clear", str(venv)]
    assert calls[1][:4] == [str(venv / "bin" / "python"), "-m", "pip", "install"] and calls[1][-2:] == ["a==1", "b==2"]
    assert not (venv / READY_FILE).exists()
    build_venv(venv, ["a==1"], version, "env", log, lambda command, **kwargs: subprocess.CompletedProcess(command, 0))
    assert (venv / READY_FILE).read_text() == "a==1\n"
    with pytest.raises(VenvError, match="env asks for Python 2.7, but Snakemake runs on Python"):
        build_venv(venv, ["a==1"], "2.7", "env", log)
