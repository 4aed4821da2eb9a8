"""`avaffect predict --zero-shot fer` on short real videos cut from ../shared/media at test time, and on bad
input made here: a truncated file, a file that is no video, a blank wall without any face, a phone video
stored sideways without audio. One command takes them all, as a user would give a folder."""

import importlib
import io
import json
import logging
import shutil
import subprocess
import sys
import tomllib
import types
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO, write_turned
from test_two_person import write_still_video

from avaffect.app.cli import main, progress_factory
from avaffect.app.frames import FRAME_COLUMNS
from avaffect.app.zero_shot import fer_zero_shot
from avaffect.core.resources import load_manifest
from avaffect.media.video import iter_frames, probe_video

CLIP_S = 2.0
TALKING_HEAD = "WDA_KatieHill_000.mp4"
OUTPUTS = (".csv", ".parquet", ".png", ".json")
WALL_FRAMES, WALL_FPS = 20, 10
PHONE_ROTATION = 90
PHONE_FRAMES = 10


def cut_copy(source: Path, destination: Path, seconds: float) -> None:
    """The first `seconds` of a video, video and audio re-encoded (H.264, AAC)."""
    with av.open(str(source)) as src, av.open(str(destination), "w") as out:
        video_in, audio_in = src.streams.video[0], src.streams.audio[0]
        video = out.add_stream("libx264", rate=video_in.average_rate)
        video.width, video.height, video.pix_fmt = video_in.width, video_in.height, "yuv420p"
        audio = out.add_stream("aac", rate=audio_in.codec_context.sample_rate)
        for frame in src.decode(video_in, audio_in):
            if frame.time is None or frame.time >= seconds:
                continue
            stream = video if isinstance(frame, av.VideoFrame) else audio
            if stream is video:
                frame = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            else:
                frame.pts = None
            out.mux(stream.encode(frame))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


@pytest.fixture(scope="module")
def inputs(shared, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    cut_copy(shared / "media" / "videos" / TALKING_HEAD, folder / "talking.mp4", CLIP_S)
    (folder / "truncated.mp4").write_bytes((shared / "media" / "videos" / TALKING_HEAD).read_bytes()[:20_000])
    (folder / "notes.mp4").write_text("not a video\n")
    rng = np.random.default_rng(0)
    wall = [np.clip(180 + rng.normal(0, 3, (240, 320, 3)), 0, 255).astype(np.uint8) for _ in range(WALL_FRAMES)]
    write_turned(folder / "wall.mp4", wall, Fraction(WALL_FPS), 0)
    upright = [image for _, image in iter_frames(folder / "talking.mp4", range(1, PHONE_FRAMES + 1))]
    write_turned(folder / "phone.mp4", upright, Fraction(25), PHONE_ROTATION)
    return folder


@pytest.fixture(scope="module")
def run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("predictions")
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    logging.getLogger("avaffect").addHandler(handler)
    try:
        status = main(["predict", "--zero-shot", "fer", "--device", "cpu", "--overlay", "--checkout", str(REPO),
                       "--out", str(out), str(inputs)])
    finally:
        logging.getLogger("avaffect").removeHandler(handler)
    return status, out, log.getvalue()


def test_bad_videos_fail_named_and_the_others_are_still_predicted(run):
    status, out, log = run
    assert status == 1
    failed = log.split("failed: 2 video(s):")[1]
    assert "truncated.mp4: not a readable media file" in failed and "notes.mp4: not a readable media file" in failed
    assert "talking.mp4" not in failed and "wall.mp4" not in failed
    for stem in ("talking", "wall", "phone"):
        assert all((out / f"{stem}{suffix}").is_file() for suffix in OUTPUTS), stem
    assert not list(out.glob("truncated*")) and not list(out.glob("notes*"))


def test_a_real_clip_gets_one_row_per_frame_with_the_shared_columns(run, inputs):
    _, out, _ = run
    info = probe_video(inputs / "talking.mp4")
    for table in (pd.read_csv(out / "talking.csv", keep_default_na=False, na_values=[""]),
                  pd.read_parquet(out / "talking.parquet")):
        assert tuple(table.columns) == FRAME_COLUMNS
        assert table["frame"].tolist() == list(range(info.n_frames))
        assert table["has_face"].all()
        assert table[["valence", "arousal"]].isna().all().all()
        probabilities = table.filter(like="p_").to_numpy()
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert (table["p_Other"] == 0).all()
        assert 0 < table["voiced"].mean() < 1  # a talking head with pauses, by Silero
    summary = json.loads((out / "talking.json").read_text())
    assert summary["frames"] == info.n_frames and summary["face_share"] == 1.0
    assert summary["duration_s"] == pytest.approx(info.duration_s)
    assert sum(summary["class_shares"].values()) == pytest.approx(1.0)
    assert summary["predictor"]["kind"] == "zero-shot fer" and summary["predictor"]["detector"] == "mediapipe"
    assert cv2.imread(str(out / "talking.png")) is not None


def test_the_overlay_decodes_to_the_same_frames_and_size(run, inputs):
    _, out, _ = run
    source, overlay = probe_video(inputs / "talking.mp4"), probe_video(out / "talking_overlay.mp4")
    assert (overlay.n_frames, overlay.width, overlay.height) == (source.n_frames, source.width, source.height)
    assert overlay.fps == pytest.approx(source.fps)
    # Drawn on: the first frame differs from the source's where the box and text are.
    [(_, drawn)], [(_, plain)] = iter_frames(out / "talking_overlay.mp4", [1]), iter_frames(inputs / "talking.mp4", [1])
    assert (np.abs(drawn.astype(int) - plain).max(axis=2) > 100).mean() > 0.001


def test_a_video_without_any_face_is_predicted_empty_with_a_warning(run):
    _, out, log = run
    table = pd.read_parquet(out / "wall.parquet")
    assert len(table) == WALL_FRAMES and not table["has_face"].any()
    assert table.filter(like="p_").isna().all().all() and (table["expression"] == "").all()
    assert "wall.mp4: no face found in any frame" in log
    assert "without any face (predictions empty):" in log and "wall.mp4" in log.split("without any face")[1]
    assert json.loads((out / "wall.json").read_text())["face_share"] == 0.0


def test_a_turned_phone_video_without_audio_is_read_upright(run, inputs):
    _, out, log = run
    table = pd.read_parquet(out / "phone.parquet")
    assert len(table) == PHONE_FRAMES and table["has_face"].all()
    assert not table["voiced"].any()
    assert "phone.mp4: no audio stream; voiced is False for every frame" in log
    shown, overlay = probe_video(inputs / "phone.mp4"), probe_video(out / "phone_overlay.mp4")
    assert shown.rotation == PHONE_ROTATION
    assert (overlay.width, overlay.height, overlay.rotation) == (shown.width, shown.height, 0)


def test_a_missing_fer_model_is_named(tmp_path, inputs, caplog):
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "config", checkout / "config")
    (checkout / "resources").mkdir()
    shutil.copy(REPO / "resources" / "manifest.yaml", checkout / "resources")
    with caplog.at_level(logging.ERROR, logger="avaffect"):
        status = main(["predict", "--zero-shot", "fer", "--checkout", str(checkout), "--out", str(tmp_path / "out"),
                       str(inputs / "wall.mp4")])
    assert status == 1
    assert f"{checkout / 'resources' / 'fer' / 'emotion_model.hdf5'}: model file missing" in caplog.text
    assert "python -m avaffect.tools.fetch resources/fer/emotion_model.hdf5" in caplog.text


def test_person_follows_the_chosen_side_of_a_two_person_video(shared, tmp_path):
    image = cv2.cvtColor(cv2.imread(str(shared / "media" / "photos" / "two_people.jpg")), cv2.COLOR_BGR2RGB)
    video = tmp_path / "pair.mp4"
    write_still_video(video, image)
    width = probe_video(video).width
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    predictor = fer_zero_shot(config, REPO / "resources", load_manifest(REPO / "resources" / "manifest.yaml"), "cpu",
                              config["faces"]["detector"])
    quiet = progress_factory(video, io.StringIO())
    tables, centres = {}, {}
    for person in ("left", "right", "largest"):
        tables[person], boxes = predictor.predict_video(video, person, quiet)
        assert boxes["has_face"].all(), person
        centres[person] = ((boxes["x0"] + boxes["x1"]) / 2).to_numpy()
    assert (centres["left"] < width / 2).all() and (centres["right"] > width / 2).all()
    assert not np.allclose(tables["left"].filter(like="p_"), tables["right"].filter(like="p_"))
    status = main(["predict", "--zero-shot", "fer", "--person", "right", "--checkout", str(REPO),
                   "--out", str(tmp_path / "out"), str(video)])
    assert status == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "out" / "pair.parquet"), tables["right"])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_one_line_bar_and_a_log_gets_lines(caplog):
    terminal = Terminal()
    progress = progress_factory(Path("clip.mp4"), terminal)("faces", 4)
    for _ in range(4):
        progress.advance()
    drawn = terminal.getvalue()
    assert drawn.startswith("\r[") and drawn.endswith("\n") and drawn.count("\n") == 1
    assert "#" * 30 + "] clip.mp4: faces: 4 of 4 frames (100%)" in drawn
    with caplog.at_level(logging.INFO, logger="avaffect"):
        logged = progress_factory(Path("clip.mp4"), io.StringIO())("faces", 2)
        logged.advance(2)
    assert "clip.mp4: faces: 2 of 2 frames (100%)" in caplog.text


MACRO_F1_FLOOR = 0.3
"""Measured: macro F1 0.463 (7 of 14 clips) with the default detector, mediapipe (0.619, 9 of 14, with
retinaface+mediapipe; see
docs/benchmarks.md, labelled_clips); chance is 1/7 = 0.143 and always answering the most frequent label 0.036.
The floor sits well below the measured value and at twice chance."""


def test_zero_shot_fer_recognises_posed_emotions_well_above_chance(shared, tmp_path):
    report_file = tmp_path / "labelled.json"
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "labelled_clips.py"), "--out", str(report_file)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(report_file.read_text())
    assert report["n"] == 14 and report["left_out_emotions"] == ["contempt"]
    assert report["macro_f1"] > MACRO_F1_FLOOR > 2 * report["chance"]["macro_f1"]
    assert report["macro_f1"] > report["majority_baseline"]["macro_f1"]
    assert report["accuracy"] > 2 * report["chance"]["accuracy"]


class StandInBundle:
    """The interface of avaffect.app.bundle's Bundle (built on its own branch and tested there): a table with
    valence and arousal, its face boxes, and the bundle's info."""

    device = "cpu"
    info = {"avaffect": "0.1.0", "tasks": {"va": {"system": "sys2"}, "expr": {"system": "sys1"}}}

    def predict_video(self, path, person, progress):
        from avaffect.app.frames import frame_table

        info = probe_video(path)
        n = info.n_frames
        progress(f"{path}: {n} frames")
        ramp = np.linspace(-1, 1, n)
        probabilities = np.tile(np.eye(8)[4], (n, 1))
        table = frame_table(info.fps, ramp, -ramp, probabilities, np.ones(n, bool), np.arange(n) % 2 == 0)
        boxes = pd.DataFrame({"frame": np.arange(n), "has_face": True, "x0": 10.0, "y0": 10.0, "x1": 60.0,
                              "y1": 80.0})
        return table, boxes


def test_a_bundle_predicts_through_the_same_outputs(inputs, tmp_path, monkeypatch):
    bundle = types.ModuleType("avaffect.app.bundle")
    opened = []
    bundle.load_bundle = lambda path, device: opened.append((path, device)) or StandInBundle()
    monkeypatch.setitem(sys.modules, "avaffect.app.bundle", bundle)
    status = main(["predict", "--bundle", str(tmp_path / "bundle"), "--device", "cpu", "--overlay",
                   "--out", str(tmp_path / "out"), str(inputs / "phone.mp4")])
    assert status == 0 and opened == [(tmp_path / "bundle", "cpu")]
    table = pd.read_parquet(tmp_path / "out" / "phone.parquet")
    assert tuple(table.columns) == FRAME_COLUMNS and len(table) == PHONE_FRAMES
    summary = json.loads((tmp_path / "out" / "phone.json").read_text())
    assert summary["mean_valence"] == pytest.approx(0.0, abs=1e-9) and summary["class_shares"]["Happiness"] == 1.0
    assert summary["voiced_share"] == 0.5
    assert summary["predictor"]["systems"] == {"va": "sys2", "expr": "sys1"}
    assert probe_video(tmp_path / "out" / "phone_overlay.mp4").n_frames == PHONE_FRAMES


def test_the_console_entry_point_is_this_cli():
    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["avaffect"]
    module, _, name = target.partition(":")
    assert getattr(importlib.import_module(module), name) is main
