"""Bad input: each case ends in a clear error naming the file and what is wrong, or in a correct result, and
never costs another video its outputs. Also: a workflow killed outright mid-stage resumes where it stopped.

The per-video cases run through the workflow's front end once (every per-video rule, `--keep-going`) on a
corpus of small rendered videos (labels made by `avaffect.corpus.demo`, as its README states); that same run is
first killed with SIGKILL while faces are being detected, and resumed with `--rerun-incomplete`.
"""

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, write_turned

from avaffect.core.checkpoints import CheckpointError, read_checkpoint, write_checkpoint
from avaffect.core.tables import read_json, write_embeddings, write_parquet
from avaffect.corpus import demo
from avaffect.corpus.annotations import HEADERS, read_annotation
from avaffect.corpus.layout import annotation_path
from avaffect.corpus.tasks import TASKS
from avaffect.media.timeline import sample_frames
from avaffect.media.video import MediaError, iter_frames, probe_video
from avaffect.media.wav import extract_audio, read_wav
from avaffect.models.normalization import Normalizer
from avaffect.models.sequences import labelled_sequences, require_labelled_steps
from avaffect.tools.workdir import copy_workflow, planned_jobs

SNAKEMAKE = [sys.executable, "-m", "snakemake"]
DURATION_S = 2.0
AUDIO_RATE = 16000
AUDIO_CHUNK = 1024  # samples per encoded AAC frame
VFR_STEPS_MS = (20, 40, 80)  # frame durations drawn at random: no constant rate
KILL_WAIT_S = 600

GOOD = {  # corpus name -> the video; every one of them must come out of the front end complete
    "ntsc": demo.DemoVideo("ntsc", "validation", demo.NTSC_FPS, DURATION_S, 21),
    "six_fps": demo.DemoVideo("six_fps", "train", Fraction(6), DURATION_S, 22),
    "no_audio": demo.DemoVideo("no_audio", "train", Fraction(25), DURATION_S, 23, audio_rate=None),
    "no_face": demo.DemoVideo("no_face", "train", Fraction(25), DURATION_S, 24, no_face=((0.0, DURATION_S),)),
    "face_gaps": demo.DemoVideo("face_gaps", "train", Fraction(25), DURATION_S, 25, no_face=((0.6, 1.4),)),
    "clip ü 1": demo.DemoVideo("clip ü 1", "train", Fraction(25), DURATION_S, 26),
    "vfr": demo.DemoVideo("vfr", "train", Fraction(25), DURATION_S, 27),
    # no_audio's pictures stored sideways, as a phone stores them (same seed: the same labels)
    "rotated": demo.DemoVideo("rotated", "train", Fraction(25), DURATION_S, 23, audio_rate=None),
}
UPRIGHT_TWIN = "no_audio"
ROTATION = 90
TWIN_TOLERANCE = 0.05
"""Faces of the sideways copy may differ from its twin's by this fraction of the face (boxes) or of the frame
(landmarks): it is encoded once more (measured: 2.8 % and 1.4 % at most)."""
BROKEN = {  # corpus name -> what the probe must say about it
    "zero_bytes": "file is empty (0 bytes)",
    "truncated": "truncated.mp4",
    "audio_only": "has no video stream",
}
PER_VIDEO_OUTPUTS = {  # rule -> its output patterns (the first is the one `output` gives), in workflow order
    "ingest_video": ("results/probe/{}.json", "results/audio/raw/{}.wav"),
    "detect_faces": ("results/faces/{}.parquet",),
    "face_landmarks": ("results/landmarks/{}.parquet",),
    "voice_activity": ("results/vad/{}.parquet",),
    "face_embeddings": ("results/embeddings/face/landmarks/{}.parquet",),
    "audio_embeddings": ("results/embeddings/audio/logmel/{}.parquet",),
}
TARGETS = ("face_embeddings", "audio_embeddings")


def write_variable_rate_video(path: Path, video: demo.DemoVideo) -> list[int]:
    """The demo rendering with frame durations drawn from VFR_STEPS_MS; returns the presentation times (ms)."""
    times = np.cumsum(np.random.default_rng(video.seed).choice(VFR_STEPS_MS, size=demo.frame_count(video)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=video.fps)
        stream.width = stream.height = demo.RENDER.frame_size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for image, t in zip(demo._frames(video), times, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return times.tolist()


def write_audio_only(path: Path, video: demo.DemoVideo) -> None:
    voice = demo.synthesize_voice(video, AUDIO_RATE)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=AUDIO_RATE)
        stream.layout = "mono"
        for start in range(0, len(voice), AUDIO_CHUNK):
            chunk = np.ascontiguousarray(voice[None, start:start + AUDIO_CHUNK])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = AUDIO_RATE, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A corpus in Aff-Wild2 layout with the GOOD videos and the BROKEN files (annotated as train samples)."""
    root = tmp_path_factory.mktemp("bad_input") / "corpus"
    broken = tuple(demo.DemoVideo(name, "train", Fraction(25), DURATION_S, 30 + i) for i, name in enumerate(BROKEN))
    demo.build_demo_corpus(root, root.parent / "test_labels", (*GOOD.values(), *broken))
    videos = root / "videos"
    write_variable_rate_video(videos / "vfr.mp4", GOOD["vfr"])
    (videos / "zero_bytes.mp4").write_bytes(b"")
    (videos / "truncated.mp4").write_bytes((videos / "truncated.mp4").read_bytes()[:3000])
    write_audio_only(videos / "audio_only.mp4", broken[2])
    write_turned(videos / "rotated.mp4", [image for _, image in iter_frames(videos / f"{UPRIGHT_TWIN}.mp4")],
                 GOOD["rotated"].fps, ROTATION)
    return root


def outputs(workdir: Path, rule: str, video: str) -> list[Path]:
    return [workdir / pattern.format(video) for pattern in PER_VIDEO_OUTPUTS[rule]]


def output(workdir: Path, rule: str, video: str) -> Path:
    return outputs(workdir, rule, video)[0]


def unfinished_jobs(workdir: Path) -> dict[str, set[str]]:
    """Per-video rule -> the videos of the corpus that lack one of its outputs."""
    jobs = {rule: {v for v in [*GOOD, *BROKEN] if not all(path.exists() for path in outputs(workdir, rule, v))}
            for rule in PER_VIDEO_OUTPUTS}
    return {rule: videos for rule, videos in jobs.items() if videos}


def existing_outputs(workdir: Path) -> list[Path]:
    paths = [path for rule in PER_VIDEO_OUTPUTS for v in [*GOOD, *BROKEN] for path in outputs(workdir, rule, v)]
    return [path for path in paths if path.exists()]


def job_of(path: str) -> tuple[str, str]:
    """The per-video rule and the video whose job writes this output path."""
    for rule, patterns in PER_VIDEO_OUTPUTS.items():
        for prefix, suffix in (pattern.split("{}") for pattern in patterns):
            if path.startswith(prefix) and path.endswith(suffix):
                return rule, path[len(prefix):-len(suffix)]
    raise ValueError(f"{path}: not a per-video output")


def readable(path: Path) -> bool:
    readers = {".parquet": pd.read_parquet, ".json": read_json, ".wav": read_wav}
    try:
        readers[path.suffix](path)
    except Exception:  # noqa: BLE001 - any failure to read is what is looked for
        return False
    return True


def running_after_one_finished(workdir: Path) -> list[str]:
    """The videos whose detect_faces job has started and not written its output, once another one has."""
    started = [v for v in GOOD if (workdir / "results" / "logs" / "detect_faces" / f"{v}.log").exists()]
    done = [v for v in GOOD if output(workdir, "detect_faces", v).exists()]
    return [v for v in started if v not in done] if done else []


@pytest.fixture(scope="module")
def front_end(corpus) -> dict:
    """Every per-video rule on every video: killed once mid-stage, then resumed to the end with --keep-going."""
    workdir = copy_workflow(REPO, corpus.parent / "work")
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    config["corpus"] = {"root": str(corpus), "demo": False, "demo_test_labels": "unused"}
    (workdir / "user.yaml").write_text(yaml.safe_dump(config))
    targets = [PER_VIDEO_OUTPUTS[rule][0].format(v) for rule in TARGETS for v in [*GOOD, *BROKEN]]
    workflow = [*SNAKEMAKE, *targets, "--configfile", "user.yaml"]  # --configfile takes every name after it
    command = [*workflow, "--cores", "2", "--keep-going"]
    with (workdir / "killed_run.log").open("w") as log:
        # its own process group: SIGKILL reaches snakemake and every job it started, as a killed session would
        run = subprocess.Popen(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        interrupted = []
        deadline = time.monotonic() + KILL_WAIT_S
        while not interrupted and run.poll() is None and time.monotonic() < deadline:
            if running_after_one_finished(workdir):
                # Frozen before it is judged: a job that wrote its output between the look and the kill would
                # otherwise leave nothing interrupted (seen on a loaded machine).
                os.killpg(run.pid, signal.SIGSTOP)
                interrupted = running_after_one_finished(workdir)
                os.killpg(run.pid, signal.SIGKILL if interrupted else signal.SIGCONT)
            time.sleep(0.05)
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert interrupted, f"no moment with one detect_faces job running after another had finished:\n" \
                        f"{(workdir / 'killed_run.log').read_text()[-3000:]}"
    missing = unfinished_jobs(workdir)
    unreadable = [path for path in existing_outputs(workdir) if not readable(path)]
    done = {v for v in GOOD if output(workdir, "detect_faces", v).exists()}
    mtimes = {v: output(workdir, "detect_faces", v).stat().st_mtime_ns for v in done}
    unflagged = subprocess.run([*command, "-n"], cwd=workdir, capture_output=True, text=True)
    locked = subprocess.run([*command, "--rerun-incomplete"], cwd=workdir, capture_output=True, text=True)
    subprocess.run([*workflow, "--unlock"], cwd=workdir, check=True, capture_output=True)
    plan = subprocess.run([*command, "-n", "--rerun-incomplete"], cwd=workdir, capture_output=True, text=True)
    resumed = subprocess.run([*command, "--rerun-incomplete"], cwd=workdir, capture_output=True, text=True)
    return {"workdir": workdir, "interrupted": interrupted, "missing": missing, "done": done, "mtimes": mtimes,
            "unreadable": unreadable, "unflagged": unflagged, "locked": locked, "plan": plan, "resumed": resumed}


def incomplete_files(dry_run_output: str) -> list[str]:
    """The files snakemake lists as incomplete (written by a job it never saw finish)."""
    if "Incomplete files:" not in dry_run_output:
        return []
    return [line.strip() for line in dry_run_output.split("Incomplete files:")[1].splitlines() if line.strip()]


@pytest.mark.workflow
def test_sigkill_mid_stage_then_rerun_incomplete_recomputes_only_the_interrupted_videos(front_end):
    workdir, plan = front_end["workdir"], front_end["plan"]
    assert front_end["unreadable"] == []  # no output name ever holds a half-written file
    locked = front_end["locked"].stdout + front_end["locked"].stderr
    assert front_end["locked"].returncode != 0 and "--unlock" in locked  # the killed run's lock stays
    unflagged = front_end["unflagged"].stdout + front_end["unflagged"].stderr
    # A job whose output was in place when the kill came, before snakemake had recorded it as finished,
    # left a complete-looking file that snakemake refuses to trust without --rerun-incomplete.
    incomplete = incomplete_files(unflagged)
    assert (front_end["unflagged"].returncode != 0) == bool(incomplete)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    # exactly what was not known to be finished: the interrupted detections, what never started, what follows
    expected = {rule: set(videos) for rule, videos in front_end["missing"].items()}
    for rule, video in map(job_of, incomplete):
        expected.setdefault(rule, set()).add(video)
    assert planned_jobs(plan.stdout) == {rule: len(videos) for rule, videos in expected.items()}
    for video in front_end["interrupted"]:
        assert PER_VIDEO_OUTPUTS["detect_faces"][0].format(video) in plan.stdout
    for video in front_end["done"]:  # recorded as finished before the kill: kept, not recomputed
        if PER_VIDEO_OUTPUTS["detect_faces"][0].format(video) not in incomplete:
            assert output(workdir, "detect_faces", video).stat().st_mtime_ns == front_end["mtimes"][video]
    assert not list(workdir.glob("results/**/.*.tmp")), "a killed writer's temporary file survived the rerun"
    for video in GOOD:
        for rule in PER_VIDEO_OUTPUTS:
            assert all(path.is_file() for path in outputs(workdir, rule, video)), (rule, video)


@pytest.mark.workflow
@pytest.mark.parametrize("video", list(BROKEN), ids=[n.replace("_", "-") for n in BROKEN])
def test_a_broken_video_is_named_with_what_is_wrong_and_stops_only_itself(front_end, corpus, video):
    workdir, resumed = front_end["workdir"], front_end["resumed"]
    assert resumed.returncode != 0
    log = (workdir / "results" / "logs" / "ingest_video" / f"{video}.log").read_text()
    assert f"{corpus / 'videos' / video}.mp4" in log and BROKEN[video] in log
    assert f"{video}.mp4" in resumed.stdout + resumed.stderr
    assert not any(path.exists() for rule in PER_VIDEO_OUTPUTS for path in outputs(workdir, rule, video))
    assert all(path.is_file() for rule in PER_VIDEO_OUTPUTS for v in GOOD for path in outputs(workdir, rule, v))


def face_rows(workdir: Path, video: str) -> pd.DataFrame:
    table = pd.read_parquet(output(workdir, "face_embeddings", video))
    return table.assign(present=table["embedding"].notna())


@pytest.mark.workflow
def test_no_audio_stream_gives_empty_audio_and_no_audio_windows(front_end):
    workdir = front_end["workdir"]
    probe = read_json(output(workdir, "ingest_video", "no_audio"))
    assert not probe["has_audio"]
    assert read_wav(outputs(workdir, "ingest_video", "no_audio")[1])[0].size == 0
    assert "no audio stream" in (workdir / "results/logs/ingest_video/no_audio.log").read_text()
    assert len(pd.read_parquet(output(workdir, "audio_embeddings", "no_audio"))) == 0
    assert face_rows(workdir, "no_audio")["present"].all()


@pytest.mark.workflow
def test_no_face_anywhere_gives_empty_face_rows_and_no_voiced_frames(front_end):
    workdir = front_end["workdir"]
    assert not pd.read_parquet(output(workdir, "detect_faces", "no_face"))["has_face"].any()
    assert "no face found in any frame" in (workdir / "results/logs/detect_faces/no_face.log").read_text()
    rows = face_rows(workdir, "no_face")
    assert len(rows) == len(sample_frames(50, 25, 5)) and not rows["present"].any()
    assert not pd.read_parquet(output(workdir, "voice_activity", "no_face"))["speaking"].any()
    assert len(pd.read_parquet(output(workdir, "audio_embeddings", "no_face"))) == 0


@pytest.mark.workflow
def test_face_in_some_frames_only_is_absent_exactly_there(front_end):
    rows = face_rows(front_end["workdir"], "face_gaps")
    start, end = GOOD["face_gaps"].no_face[0]
    hidden = (rows["time_s"] >= start) & (rows["time_s"] < end)
    assert not rows.loc[hidden, "present"].any() and rows.loc[~hidden, "present"].all()


@pytest.mark.workflow
def test_a_video_stored_sideways_gives_the_faces_of_its_upright_twin(front_end):
    workdir = front_end["workdir"]
    probe = read_json(output(workdir, "ingest_video", "rotated"))
    assert (probe["rotation"], probe["mirrored"]) == (ROTATION, False)
    turned, upright = (pd.read_parquet(output(workdir, "detect_faces", v)) for v in ("rotated", UPRIGHT_TWIN))
    assert turned["has_face"].all() and upright["has_face"].all()
    corners = ["x1", "y1", "x2", "y2"]
    width = (upright["x2"] - upright["x1"]).mean()
    assert (turned[corners] - upright[corners]).abs().to_numpy().max() < TWIN_TOLERANCE * width
    turned, upright = face_rows(workdir, "rotated"), face_rows(workdir, UPRIGHT_TWIN)
    assert turned["frame"].tolist() == upright["frame"].tolist() and turned["present"].all()
    # landmark descriptors: positions as fractions of the frame
    difference = np.stack(turned["embedding"]) - np.stack(upright["embedding"])
    assert np.abs(difference).max() < TWIN_TOLERANCE


@pytest.mark.workflow
@pytest.mark.parametrize(("video", "fps", "n_frames"), [
    ("six_fps", 6.0, 12), ("ntsc", 30000 / 1001, 60), ("vfr", None, 50), ("clip ü 1", 25.0, 50),
], ids=["6-fps", "29.97-fps", "variable-frame-rate", "spaces-and-non-ascii-name"])
def test_frame_rates_and_names_give_one_row_per_decoded_frame_at_the_label_rate(front_end, video, fps, n_frames):
    workdir = front_end["workdir"]
    probe = read_json(output(workdir, "ingest_video", video))
    assert probe["n_frames"] == n_frames
    assert probe["variable_frame_rate"] == (video == "vfr")
    if video == "vfr":
        assert "variable frame rate" in (workdir / "results/logs/ingest_video/vfr.log").read_text()
    if fps is not None:
        assert probe["fps"] == pytest.approx(fps)
    rows = face_rows(workdir, video)
    assert rows["frame"].tolist() == sample_frames(n_frames, probe["fps"], 5).tolist()
    assert rows["present"].all()
    vad = pd.read_parquet(output(workdir, "voice_activity", video))
    assert vad["frame"].tolist() == list(range(1, n_frames + 1))


# Library level: annotations, model files, interrupted writes.

def embeddings_file(path: Path, n_frames: int, fps: float) -> Path:
    frames = sample_frames(n_frames, fps, 5)
    write_embeddings({"frame": frames, "time_s": (frames - 1) / fps}, np.ones((len(frames), 3)),
                     np.ones(len(frames), bool), path)
    return path


@pytest.mark.parametrize(("task", "lines", "message"), [
    ("va", 60, "60 label lines for 50 decoded frames"),
    ("va", 40, "40 label lines for 50 decoded frames"),
    ("expr", 60, "60 label lines for 50 decoded frames"),
    ("expr", 40, "40 label lines for 50 decoded frames"),
], ids=["annotation-longer-va", "annotation-shorter-va", "annotation-longer-expr", "annotation-shorter-expr"])
def test_annotation_length_mismatch_is_logged_and_never_shifts_labels(tmp_path, task, lines, message):
    n_frames, fps = 50, 25.0
    values = ([f"{k / 100:.2f},{-k / 100:.2f}" for k in range(lines)] if task == "va"
              else [str(k % 8) for k in range(lines)])
    path = annotation_path(tmp_path, task, "train", "clip")
    path.parent.mkdir(parents=True)
    path.write_text("\n".join([HEADERS[task], *values]))
    logged = []
    embeddings = {"clip": embeddings_file(tmp_path / "clip.parquet", n_frames, fps)}
    [sequence] = labelled_sequences(["clip"], task, "train", tmp_path, "face", embeddings, {},
                                    {"clip": {"n_frames": n_frames, "fps": fps}}, logged.append, 1.0)
    assert [m for m in logged if str(path) in m and message in m]
    expected = read_annotation(path, task)
    for frame, label in zip(sequence.frames, sequence.labels, strict=True):
        if frame <= lines:
            assert np.array_equal(label, expected[frame - 1])
        else:
            assert np.isnan(label).all() if task == "va" else label == -1


@pytest.mark.parametrize("task", TASKS, ids=["all-labels-invalid-va", "all-labels-invalid-expr"])
def test_all_labels_invalid_is_named_and_alone_cannot_train(tmp_path, task):
    marker = "-5,-5" if task == "va" else "-1"
    path = annotation_path(tmp_path, task, "train", "clip")
    path.parent.mkdir(parents=True)
    path.write_text("\n".join([HEADERS[task], *[marker] * 50]) + "\n")
    logged = []
    embeddings = {"clip": embeddings_file(tmp_path / "clip.parquet", 50, 25.0)}
    sequences = labelled_sequences(["clip"], task, "train", tmp_path, "face", embeddings, {},
                                   {"clip": {"n_frames": 50, "fps": 25.0}}, logged.append, 1.0)
    assert [m for m in logged if str(path) in m and "no valid label" in m]
    with pytest.raises(ValueError, match=f"model m, task {task}: no train step has both"):
        require_labelled_steps(task, "train", sequences, f"model m, task {task}")


@pytest.fixture(scope="module")
def checkpoint_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint.pt"
    write_checkpoint({"family": "transformer", "state_dict": {"w": torch.zeros(3)}}, path)
    return path


@pytest.mark.parametrize("damage", ["missing", "truncated", "not-torch"],
                         ids=["missing-model-file", "corrupt-model-file-truncated", "corrupt-model-file-garbage"])
def test_a_missing_or_corrupt_model_file_is_named(checkpoint_file, tmp_path, damage):
    path = tmp_path / "model file.pt"
    if damage == "truncated":
        path.write_bytes(checkpoint_file.read_bytes()[:200])
    elif damage == "not-torch":
        path.write_bytes(b"<html>rate limited</html>" * 40)
    with pytest.raises(CheckpointError, match="not found" if damage == "missing" else "corrupt or truncated") as err:
        read_checkpoint(path)
    assert str(path) in str(err.value) and "weights_only" not in str(err.value)


def test_a_checkpoint_round_trips(checkpoint_file):
    assert read_checkpoint(checkpoint_file)["family"] == "transformer"


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100, None],
                         ids=["zero-byte-file", "not-a-media-file", "truncated-video"])
def test_unreadable_videos_name_the_file(tmp_path, content):
    bad = tmp_path / "broken clip.mp4"
    if content is None:
        demo.write_video(bad, demo.DemoVideo("cut", "train", Fraction(25), DURATION_S, 1))
        content = bad.read_bytes()[:2000]
    bad.write_bytes(content)
    with pytest.raises(MediaError, match="broken clip.mp4"):
        probe_video(bad)


def test_an_audio_only_file_names_the_missing_video_stream_but_its_audio_reads(tmp_path):
    path = tmp_path / "song.mp4"
    write_audio_only(path, demo.DemoVideo("song", "train", Fraction(25), DURATION_S, 3))
    with pytest.raises(MediaError, match=f"{path}: has no video stream"):
        probe_video(path)
    assert abs(len(extract_audio(path, AUDIO_RATE)) - DURATION_S * AUDIO_RATE) < 0.05 * AUDIO_RATE


def test_a_write_that_fails_midway_leaves_no_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    path = tmp_path / "faces.parquet"
    write_parquet(pd.DataFrame({"frame": [1, 2]}), path)
    real_write = pq.write_table

    def fail_midway(table, where):
        real_write(table, where)
        Path(where).write_bytes(Path(where).read_bytes()[:20])
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_parquet(pd.DataFrame({"frame": [1, 2, 3]}), path)
    assert pd.read_parquet(path)["frame"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.parquet"]
    with pytest.raises(OSError, match="disk full"):
        write_parquet(pd.DataFrame({"frame": [1]}), tmp_path / "new.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.parquet"]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    stale = tmp_path / ".faces.parquet.12345.tmp"
    stale.write_bytes(b"PAR1 half")
    write_parquet(pd.DataFrame({"frame": [1]}), tmp_path / "faces.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faces.parquet"]


@pytest.mark.parametrize(("clip", "variable"), [("retalking_face_1.mp4", True), ("WDA_KatieHill_000.mp4", False)],
                         ids=["variable-frame-rate-real-clip", "constant-frame-rate-real-clip"])
def test_a_real_clip_with_dropped_frames_is_seen_as_variable_rate(shared, clip, variable):
    # retalking_face_1 steps by 1/30 s or 2/30 s: its average rate is 22.1 fps
    assert probe_video(shared / "media" / "videos" / clip).variable_frame_rate == variable


SUBMISSION_UNDER_ASCII_LOCALE = """
import sys
from pathlib import Path
import pandas as pd
from avaffect.fusion.submission import expected_rows, format_va, read_submission, write_submission
path, name = Path(sys.argv[1]), "clip \\u00fc 1"
predictions = pd.DataFrame({"video": [name] * 2, "frame": [1, 2], "valence": [0.1, 0.2], "arousal": [0.0, 0.1]})
write_submission(path, format_va(predictions), "va", expected_rows({name: 2}))
assert read_submission(path, "va")["image_location"].tolist() == expected_rows({name: 2})
"""


def test_a_non_ascii_name_is_written_to_the_submission_as_utf8_whatever_the_locale(tmp_path):
    ascii_locale = os.environ | {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    path = tmp_path / "submission_va.txt"
    result = subprocess.run([sys.executable, "-c", SUBMISSION_UNDER_ASCII_LOCALE, str(path)], env=ascii_locale,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert path.read_text(encoding="utf-8").splitlines()[1].startswith("clip ü 1/00001.jpg,")


def test_an_augmented_copy_follows_its_sample_with_the_same_labels(tmp_path):
    path = annotation_path(tmp_path, "va", "train", "clip")
    path.parent.mkdir(parents=True)
    path.write_text("\n".join([HEADERS["va"], *["0.5,-0.5"] * 50]))
    originals = {s: embeddings_file(tmp_path / f"{s}.parquet", 50, 25.0) for s in ("clip", "other")}
    copy = {"clip": embeddings_file(tmp_path / "augmented" / "1" / "clip.parquet", 50, 25.0)}
    (tmp_path / "VA_Estimation_Challenge" / "Train_Set" / "other.txt").write_text(path.read_text())
    sequences = labelled_sequences(["clip", "other"], "va", "train", tmp_path, "face", originals, {"1": copy},
                                   {v: {"n_frames": 50, "fps": 25.0} for v in ("clip", "other")}, print, 1.0)
    assert [s.video for s in sequences] == ["clip", "clip", "other"]
    assert all(np.allclose(s.labels, [0.5, -0.5]) for s in sequences)


def test_per_video_minmax_scales_an_augmented_copy_by_its_own_range_not_one_pooled_with_its_original(tmp_path):
    path = annotation_path(tmp_path, "va", "train", "clip")
    path.parent.mkdir(parents=True)
    path.write_text("\n".join([HEADERS["va"], *["0.5,-0.5"] * 100]))
    fps = 25.0
    frames = sample_frames(100, fps, 5)
    steps = np.concatenate([frames[:12], frames[8:20]])  # two overlapping audio windows of 12 steps
    columns = {"frame": steps, "time_s": (steps - 1) / fps, "window": np.repeat([0, 1], 12)}
    unit = np.stack([np.linspace(0.0, 1.0, 24), np.linspace(1.0, 0.0, 24)], axis=1)
    # Gain and noise move a copy's embeddings far from its original's: a pooled range squashes each of them.
    ranges = {None: (0.0, 2.0), "1": (100.0, 300.0), "2": (-50.0, -49.0)}
    files = {copy: tmp_path / ("" if copy is None else f"augmented/{copy}") / "clip.parquet" for copy in ranges}
    for copy, (low, high) in ranges.items():
        write_embeddings(columns, low + (high - low) * unit, np.ones(24, bool), files[copy])
    sequences = labelled_sequences(["clip"], "va", "train", tmp_path, "audio", {"clip": files[None]},
                                   {copy: {"clip": f} for copy, f in files.items() if copy is not None},
                                   {"clip": {"n_frames": 100, "fps": fps}}, print, 1.0)
    assert [(s.video, s.copy) for s in sequences] == [("clip", c) for c in ranges for _ in range(2)]
    scaled = Normalizer.fit(sequences, "per_video_minmax").transform(sequences)
    for k, copy in enumerate(ranges):
        features = np.concatenate([x[:, :-1] for x in scaled[2 * k:2 * k + 2]])
        assert features.min(axis=0) == pytest.approx([0.0, 0.0]), f"copy {copy}"
        assert features.max(axis=0) == pytest.approx([1.0, 1.0]), f"copy {copy}"
