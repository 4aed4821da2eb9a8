"""A small Aff-Wild2-shaped demo corpus built offline from scikit-image's `astronaut` photograph.

Every video animates the same real face with known per-frame signals, and the labels are a stated,
deterministic function of what is seen and heard (see CORPUS_README), so a pipeline that keeps frames,
labels and predictions aligned recovers them and a misaligned one does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data

from avaffect.corpus.layout import NAME_ENCODING, Manifest, annotation_path, challenge_test_list, video_of
from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, SPLITS, TASKS, VA_INVALID

NTSC_FPS = Fraction(30000, 1001)


@dataclass(frozen=True)
class Rendering:
    """How labels become pixels and sound; the numbers are documented in CORPUS_README."""

    frame_size: int = 192
    face_center: tuple[float, float] = (224.0, 125.0)  # astronaut face, source pixels
    view_side: float = 240.0  # source pixels shown across the frame at zoom 1
    mouth_center: tuple[float, float] = (223.0, 146.0)
    lip_gap: tuple[float, float] = (142.0, 150.0)  # inner lips, source rows
    mouth_half_width: float = 22.0
    chin_y: float = 176.0
    max_mouth_drop: float = 14.0  # source pixels the lower lip moves down at full opening
    max_roll_deg: float = 25.0  # |valence| = 1
    zoom_per_arousal: float = 0.25
    shift_per_class: float = 0.045  # fraction of frame width between neighbouring classes
    shift_glide_s: float = 0.3  # the face glides to a new class's position, as a head would move
    no_face_center: tuple[float, float] = (256.0, 400.0)  # a view of the suit: no face in it
    syllable_rate_hz: float = 4.0
    f0_base_hz: float = 100.0
    f0_step_hz: float = 30.0  # per expression class
    loudness_min: float = 0.08
    loudness_span: float = 0.22
    noise_level: float = 0.004
    harmonics: int = 8
    signal_peak: float = 0.85


RENDER = Rendering()


@dataclass(frozen=True)
class DemoVideo:
    name: str
    split: str  # train, validation or test
    fps: Fraction
    duration_s: float
    seed: int
    audio_rate: int | None = 44100  # None: the file has no audio stream
    no_face: tuple[tuple[float, float], ...] = ()  # seconds without the face in view


DEMO_VIDEOS: tuple[DemoVideo, ...] = (
    DemoVideo("demo01", "train", Fraction(25), 20.0, 1),
    DemoVideo("demo02", "train", Fraction(30), 20.0, 2),
    DemoVideo("demo03", "train", NTSC_FPS, 20.0, 3, audio_rate=16000),
    DemoVideo("demo04", "train", Fraction(25), 20.0, 4, no_face=((3.0, 4.5),)),
    DemoVideo("demo05", "train", Fraction(30), 20.0, 5, audio_rate=48000),
    DemoVideo("demo06", "train", NTSC_FPS, 20.0, 6),
    DemoVideo("demo07", "train", Fraction(8), 20.0, 7),
    DemoVideo("demo08", "train", Fraction(25), 20.0, 8),
    DemoVideo("demo09", "validation", Fraction(25), 10.0, 9),
    DemoVideo("demo10", "validation", NTSC_FPS, 10.0, 10),
    DemoVideo("demo11", "validation", Fraction(8), 12.0, 11),
    DemoVideo("demo12", "test", Fraction(30), 10.0, 12, no_face=((5.0, 6.0),)),
    DemoVideo("demo13", "test", Fraction(25), 10.0, 13, audio_rate=None),
    DemoVideo("demo14", "test", NTSC_FPS, 10.0, 14),
)

CORPUS_README = f"""# avaffect demo corpus

Built offline by `avaffect.corpus.demo.build_demo_corpus` from scikit-image's `astronaut` photograph (public
domain, NASA). Aff-Wild2 layout: `videos/`, `VA_Estimation_Challenge/` and `EXPR_Recognition_Challenge/`
with `Train_Set/` and `Validation_Set/` annotation files and a `Test_Set.txt` list of test videos whose
labels are kept outside the corpus, as the organisers keep them.

## How labels are made

Each video has three known signals over time t (seconds), drawn from the video's seed:
valence v(t) and arousal a(t) (sums of three slow sinusoids, 0.07-0.3 Hz, peak |{RENDER.signal_peak}|),
and an expression class c(t) in 0..7 ({", ".join(EXPR_CLASSES)}) held for 1.5-3 s at a time.
They are rendered, frame by frame, as:

- head roll = {RENDER.max_roll_deg} degrees x v(t) (valence is seen as the tilt of the head);
- zoom = 1 + {RENDER.zoom_per_arousal} x a(t) (arousal is seen as the size of the face) and heard as the
  loudness of the voice, {RENDER.loudness_min} + {RENDER.loudness_span} x (a(t) + 1) / 2;
- horizontal offset = {RENDER.shift_per_class} x frame width x (c(t) - 3.5) (the expression is seen as the
  position of the face, which glides to a new class's place over {RENDER.shift_glide_s} s) and heard as the
  voice's pitch, {RENDER.f0_base_hz} + {RENDER.f0_step_hz} x c(t) Hz.

Speech alternates voiced bursts (0.8-2 s) and pauses (0.5-1.5 s). In a burst the lower lip drops by up to
{RENDER.max_mouth_drop} source pixels, following a {RENDER.syllable_rate_hz} Hz syllable envelope, and the
audio is a harmonic voice with the same envelope; pauses hold only faint noise.

Frame k (1-based, line k + 1 of an annotation file) shows time (k - 1) / fps. Annotation lines are the
signals at that time: `valence,arousal` with two decimals, and the class index. Frames where the face is
out of view carry the invalid markers ({VA_INVALID:g} and {EXPR_INVALID}), as Aff-Wild2 does.

Videos mix 25, 29.97, 30 and 8 fps; `demo04` and `demo12` have stretches without a face; `demo13` has
no audio stream. `signals.json` holds every video's fps, split and seed.
"""


TEST_LABELS_README = """# Test labels of the avaffect demo corpus

Kept outside the corpus, as the ABAW organisers keep theirs, so that a submission can be scored
(`avaffect.corpus.metrics`) without the workflow ever reading them. Same layout and format as the corpus's
annotation folders.
"""


def smooth_signal(rng: np.random.Generator, times: np.ndarray, peak: float) -> np.ndarray:
    freqs = rng.uniform(0.07, 0.3, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    amps = rng.uniform(0.5, 1.0, size=3)
    raw = (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * times[None, :] + phases[:, None])).sum(0)
    return peak * raw / np.abs(raw).max()


def piecewise(rng: np.random.Generator, duration_s: float, lengths: tuple[float, float]) -> np.ndarray:
    """Boundaries (seconds) of consecutive segments whose lengths are uniform in `lengths`."""
    edges = [0.0]
    while edges[-1] < duration_s:
        edges.append(edges[-1] + rng.uniform(*lengths))
    return np.array(edges)


@dataclass(frozen=True)
class Signals:
    valence: np.ndarray
    arousal: np.ndarray
    expression: np.ndarray
    position: np.ndarray  # horizontal offset in class units, gliding between classes
    mouth: np.ndarray  # 0 closed .. 1 fully open; also the voice's envelope


def signals_at(video: DemoVideo, times: np.ndarray) -> Signals:
    """The video's known signals at the given times; the same times always give the same values."""
    rng = np.random.default_rng(video.seed)
    valence = smooth_signal(rng, times, RENDER.signal_peak)
    arousal = smooth_signal(rng, times, RENDER.signal_peak)
    expr_edges = piecewise(rng, video.duration_s, (1.5, 3.0))
    classes = rng.integers(0, len(EXPR_CLASSES), size=len(expr_edges))
    expression = classes[np.searchsorted(expr_edges, times, side="right") - 1]
    glide = np.linspace(0.0, RENDER.shift_glide_s, 7)
    earlier = np.clip(times[None, :] - glide[:, None], 0.0, None)
    position = classes[np.searchsorted(expr_edges, earlier, side="right") - 1].mean(axis=0)
    speech_edges = piecewise(rng, video.duration_s, (0.5, 2.0))
    voiced = (np.searchsorted(speech_edges, times, side="right") - 1) % 2 == 1
    burst_start = speech_edges[np.searchsorted(speech_edges, times, side="right") - 1]
    syllables = np.abs(np.sin(np.pi * RENDER.syllable_rate_hz * (times - burst_start)))
    mouth = np.where(voiced, 0.35 + 0.65 * syllables, 0.0)
    return Signals(valence, arousal, expression.astype(np.int64), position, mouth)


def face_visible(video: DemoVideo, times: np.ndarray) -> np.ndarray:
    hidden = np.zeros(times.shape, dtype=bool)
    for start, end in video.no_face:
        hidden |= (times >= start) & (times < end)
    return ~hidden


def open_mouth(source: np.ndarray, opening: float) -> np.ndarray:
    """Open the mouth by `opening` x max_mouth_drop pixels: the gap between the lips (teeth) is stretched
    and the lower lip and jaw move down, fading out below the chin."""
    drop = opening * RENDER.max_mouth_drop
    if drop < 0.5:
        return source
    mx = RENDER.mouth_center[0]
    top, bottom = RENDER.lip_gap
    height, width = source.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    across = np.clip(np.abs(xs - mx) / (2 * RENDER.mouth_half_width), 0, 1)
    horizontal = 0.5 * (1 + np.cos(np.pi * across))
    jaw_end = RENDER.chin_y + 2 * RENDER.max_mouth_drop
    stretched = top + (ys - top) * (bottom - top) / (bottom - top + drop)
    shifted = ys - drop * np.clip((jaw_end - ys) / (jaw_end - bottom - drop), 0, 1)
    moved = np.where(ys < top, ys, np.where(ys < bottom + drop, stretched, shifted))
    map_y = ys + horizontal * (moved - ys)
    return cv2.remap(source, xs, map_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def render_frame(source: np.ndarray, valence: float, arousal: float, position: float, mouth: float,
                 visible: bool) -> np.ndarray:
    size = RENDER.frame_size
    if not visible:
        scale = size / RENDER.view_side
        cx, cy = RENDER.no_face_center
        matrix = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]])
        return cv2.warpAffine(source, matrix, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
    face = open_mouth(source, mouth)
    scale = size / RENDER.view_side * (1 + RENDER.zoom_per_arousal * arousal)
    matrix = cv2.getRotationMatrix2D(RENDER.face_center, RENDER.max_roll_deg * valence, scale)
    shift = RENDER.shift_per_class * size * (position - (len(EXPR_CLASSES) - 1) / 2)
    matrix[:, 2] += np.array([size / 2 + shift, size / 2]) - np.array(RENDER.face_center)
    return cv2.warpAffine(face, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def synthesize_voice(video: DemoVideo, sample_rate: int) -> np.ndarray:
    times = np.arange(int(round(video.duration_s * sample_rate))) / sample_rate
    sig = signals_at(video, times)
    f0 = RENDER.f0_base_hz + RENDER.f0_step_hz * sig.expression
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    ks = np.arange(1, RENDER.harmonics + 1)
    voice = (np.sin(np.outer(phase, ks)) / ks).sum(axis=1) / (1 / ks).sum()
    loudness = RENDER.loudness_min + RENDER.loudness_span * (sig.arousal + 1) / 2
    voice *= loudness * sig.mouth * face_visible(video, times)
    noise = np.random.default_rng(video.seed + 1000).normal(0, RENDER.noise_level, times.shape)
    return (voice + noise).astype(np.float32)


def frame_count(video: DemoVideo) -> int:
    return int(round(video.duration_s * float(video.fps)))


def _frames(video: DemoVideo) -> Iterator[np.ndarray]:
    source = skimage.data.astronaut()
    times = np.arange(frame_count(video)) / float(video.fps)
    sig = signals_at(video, times)
    visible = face_visible(video, times)
    for i in range(len(times)):
        yield render_frame(source, sig.valence[i], sig.arousal[i], sig.position[i], sig.mouth[i],
                           bool(visible[i]))


def write_video(path: Path, video: DemoVideo) -> None:
    audio_chunk = 1024
    with av.open(str(path), "w") as container:
        vstream = container.add_stream("libx264", rate=video.fps)
        vstream.width = vstream.height = RENDER.frame_size
        vstream.pix_fmt = "yuv420p"
        # x264's macroblock-tree rate control made the bitstream differ from run to run here (with one thread
        # too); without it the demo corpus, and every score the tests check on it, is the same on every run.
        vstream.options = {"crf": "18", "preset": "veryfast", "x264-params": "mbtree=0"}
        astream = None
        if video.audio_rate:
            astream = container.add_stream("aac", rate=video.audio_rate)
            astream.layout = "mono"
        for image in _frames(video):
            container.mux(vstream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(vstream.encode(None))
        if astream is not None:
            voice = synthesize_voice(video, video.audio_rate)
            for start in range(0, len(voice), audio_chunk):
                chunk = voice[None, start:start + audio_chunk]
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="mono")
                frame.sample_rate = video.audio_rate
                frame.pts = start
                container.mux(astream.encode(frame))
            container.mux(astream.encode(None))


def annotation_lines(video: DemoVideo) -> tuple[list[str], list[str]]:
    """VA and EXPR annotation lines (without header) for every frame of the video."""
    times = np.arange(frame_count(video)) / float(video.fps)
    sig = signals_at(video, times)
    visible = face_visible(video, times)
    va = [f"{v:.2f},{a:.2f}" if ok else f"{VA_INVALID:g},{VA_INVALID:g}"
          for v, a, ok in zip(sig.valence, sig.arousal, visible, strict=True)]
    expr = [str(c) if ok else str(EXPR_INVALID) for c, ok in zip(sig.expression, visible, strict=True)]
    return va, expr


def write_annotations(root: Path, video: DemoVideo, split: str) -> None:
    va, expr = annotation_lines(video)
    for task, header, lines in (("va", "valence,arousal", va), ("expr", ",".join(EXPR_CLASSES), expr)):
        path = annotation_path(root, task, split, video.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([header, *lines]) + "\n")


def corpus_files(root: Path, test_labels: Path) -> list[Path]:
    """Every file build_demo_corpus writes, so a workflow can name them as outputs."""
    files = [root / "signals.json"]
    files += [challenge_test_list(root, task) for task in TASKS]
    for video in DEMO_VIDEOS:
        files.append(root / "videos" / f"{video.name}.mp4")
        labels_root = test_labels if video.split == "test" else root
        files += [annotation_path(labels_root, task, video.split, video.name) for task in TASKS]
    return files


def build_demo_corpus(root: Path, test_labels: Path, videos: tuple[DemoVideo, ...] = DEMO_VIDEOS) -> None:
    """The corpus of `videos` (the demo's by default; tests build others) in Aff-Wild2 layout."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    for video in videos:
        write_video(root / "videos" / f"{video.name}.mp4", video)
        write_annotations(test_labels if video.split == "test" else root, video, video.split)
    tests = [v.name for v in videos if v.split == "test"]
    for task in TASKS:
        challenge_test_list(root, task).write_text("\n".join(tests) + "\n", encoding=NAME_ENCODING)
    (root / "README.md").write_text(CORPUS_README)
    test_labels.mkdir(parents=True, exist_ok=True)
    (test_labels / "README.md").write_text(TEST_LABELS_README)
    description = {v.name: {"split": v.split, "fps": float(v.fps), "seed": v.seed, "duration_s": v.duration_s,
                            "audio_rate": v.audio_rate, "no_face": v.no_face} for v in videos}
    (root / "signals.json").write_text(json.dumps(description, indent=2) + "\n")


def demo_manifest(root: Path) -> Manifest:
    """The demo corpus's samples, known before the corpus is built, so a workflow can plan it."""
    samples = {task: {split: [v.name for v in DEMO_VIDEOS if v.split == split] for split in SPLITS}
               for task in TASKS}
    return Manifest(samples=samples, videos={video_of(v.name): Path(root) / "videos" / f"{v.name}.mp4"
                                             for v in DEMO_VIDEOS})
