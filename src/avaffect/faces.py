"""Face detection behind one interface, same-person tracking across frames, and cropping."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import groupby
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import pandas as pd

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Five-point landmarks in image coordinates; "left" is the smaller x in the image."""


@dataclass(frozen=True)
class FaceBox:
    """One detected face in pixel coordinates of the frame it was found in."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    landmarks: np.ndarray  # (5, 2) float32 in LANDMARK_NAMES order; NaN where a detector has none
    detector: str = ""
    appearance: np.ndarray | None = None  # `face_appearance` of the face, for tracking across shot cuts

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)

    @property
    def size(self) -> float:
        return max(self.x2 - self.x1, self.y2 - self.y1)


class FaceDetector(Protocol):
    name: str

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """Faces of each RGB uint8 image (H, W, 3), best score first."""
        ...


def resolve_device(device: str) -> str:
    """`auto` picks CUDA when torch sees a GPU; anything else is used as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class MediaPipeDetector:
    """MediaPipe's BlazeFace detector, bundled with the mediapipe 0.10.14 wheel (no download)."""

    name = "mediapipe"

    def __init__(self, model_selection: int = 1, score_threshold: float = 0.5):
        import mediapipe as mp

        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=score_threshold
        )

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [self._detect(image) for image in images_rgb]

    def _detect(self, image: np.ndarray) -> list[FaceBox]:
        height, width = image.shape[:2]
        found = self._detector.process(np.ascontiguousarray(image)).detections or []
        boxes = []
        for detection in found:
            rel = detection.location_data.relative_bounding_box
            keypoints = detection.location_data.relative_keypoints
            # BlazeFace keypoints: right eye, left eye (the subject's), nose tip, mouth centre, two ears.
            eyes = sorted([(keypoints[0].x, keypoints[0].y), (keypoints[1].x, keypoints[1].y)])
            mouth = (keypoints[3].x, keypoints[3].y)
            points = np.array([*eyes, (keypoints[2].x, keypoints[2].y), mouth, mouth], np.float32)
            points *= np.array([width, height], np.float32)
            x1, y1 = max(rel.xmin * width, 0.0), max(rel.ymin * height, 0.0)
            x2 = min((rel.xmin + rel.width) * width, float(width))
            y2 = min((rel.ymin + rel.height) * height, float(height))
            boxes.append(FaceBox(x1, y1, x2, y2, float(detection.score[0]), points, self.name))
        return sorted(boxes, key=lambda box: -box.score)


class FaceLandmarkerDetector:
    """MediaPipe's Face Landmarker task (resource mediapipe_face_landmarker) as a detector: each face is the box
    around its 478-point mesh, with five points taken from the mesh. Its own detector and mesh find faces in
    poses where BlazeFace gives up, which makes it a fallback for the others."""

    name = "face_landmarker"
    # Mesh indices: eye corners (each eye's centre is the mean of its two), nose tip, mouth corners.
    EYE_CORNERS = ((33, 133), (362, 263))
    NOSE_TIP = 1
    MOUTH_CORNERS = (61, 291)

    def __init__(self, task_file: Path, max_faces: int, score_threshold: float):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        # The task reports no per-face confidence: every face it returns passed this threshold.
        self.score_threshold = score_threshold
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(task_file)), running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces, min_face_detection_confidence=score_threshold,
            min_face_presence_confidence=score_threshold,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        return [self._detect(image) for image in images_rgb]

    def _detect(self, image: np.ndarray) -> list[FaceBox]:
        height, width = image.shape[:2]
        found = self._landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB,
                                                       data=np.ascontiguousarray(image))).face_landmarks
        boxes = []
        for mesh in found:
            xy = np.array([(point.x, point.y) for point in mesh], np.float32) * np.array([width, height], np.float32)
            eyes = sorted(tuple(xy[list(pair)].mean(axis=0)) for pair in self.EYE_CORNERS)
            mouth = sorted(tuple(xy[i]) for i in self.MOUTH_CORNERS)
            points = np.array([*eyes, xy[self.NOSE_TIP], *mouth], np.float32)
            x1, y1 = np.clip(xy.min(axis=0), 0, None)
            x2, y2 = np.minimum(xy.max(axis=0), (width, height))
            boxes.append(FaceBox(float(x1), float(y1), float(x2), float(y2), self.score_threshold, points, self.name))
        return boxes


class RetinaFaceResNet50Detector:
    """RetinaFace ResNet-50 of the `retina-face` package (TensorFlow), which cannot share this environment: one
    child process (avaffect.retinaface_resnet50) in the Python of envs/retinaface.yaml loads the model once
    and detects the frames of each batch sent to it. The child ends with its input: at close(), or when the
    job's process exits. The package returns no face without its landmarks."""

    name = "retinaface_resnet50"
    STDERR_TAIL_CHARS = 4000

    def __init__(self, weights: Path, python: Path, score_threshold: float, allow_upscaling: bool):
        import subprocess
        import tempfile

        import avaffect

        # The child imports this library from the same checkout, whatever its environment has installed.
        source = str(Path(avaffect.__file__).parent.parent)
        env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
        # A file, not a pipe: TensorFlow's start-up chatter would fill a pipe nobody reads and stall the child.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (open for the child's life, closed by close())
        self._command = [str(python), "-m", "avaffect.retinaface_resnet50", "--weights", str(Path(weights).absolute()),
                         "--score-threshold", str(score_threshold),
                         "--allow-upscaling", "true" if allow_upscaling else "false"]
        self._child = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self._stderr, env=env)

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        from avaffect.retinaface_resnet50 import ChildProtocolError, parse_reply, write_frames

        found = []
        # One array per run of same-sized images (a video's frames are one run).
        for _, run in groupby(images_rgb, key=lambda image: image.shape):
            run = list(run)
            try:
                write_frames(self._child.stdin, np.stack(run))
                line = self._child.stdout.readline()
            except BrokenPipeError:
                line = b""
            if not line:
                raise RuntimeError(self._failure("stopped without answering"))
            try:
                found.extend(parse_reply(line, len(run)))
            except ChildProtocolError as err:
                raise RuntimeError(self._failure(f"answered what cannot be read: {err}")) from err
        return [[FaceBox(*box, score, points, self.name) for box, score, points in faces] for faces in found]

    def close(self) -> None:
        """End the child (end of its input) and wait for it."""
        if self._child.poll() is None:
            self._child.stdin.close()
            self._child.wait()
        self._stderr.close()

    def _failure(self, what: str) -> str:
        code = self._child.wait()
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace")[-self.STDERR_TAIL_CHARS:]
        return (f"RetinaFace ResNet-50 child `{' '.join(self._command)}` {what} (exit status {code}); "
                f"its stderr:\n{tail}")


class FallbackDetector:
    """Ask the next detector only for the images in which the previous ones found nothing."""

    def __init__(self, detectors: Sequence[FaceDetector]):
        self.detectors = list(detectors)
        self.name = "+".join(d.name for d in self.detectors)

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        results: list[list[FaceBox]] = [[] for _ in images_rgb]
        for detector in self.detectors:
            todo = [i for i, faces in enumerate(results) if not faces]
            if not todo:
                break
            for i, faces in zip(todo, detector.detect_batch([images_rgb[i] for i in todo]), strict=True):
                results[i] = [replace(face, detector=detector.name) for face in faces]
        return results


def iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


APPEARANCE_BINS = (8, 4, 4)
"""Hue x saturation x value bins of the appearance histograms: coarse enough for a face of 30 px, fine
enough to tell skin, clothes and lighting of different shots apart."""
APPEARANCE_INNER = 0.2
"""Fraction of the face box cut from each side, so background and hair weigh little in the face part."""
TORSO_BELOW = (0.2, 1.5)
"""The torso part spans these multiples of the face height below the face, and one face width to each side
of its centre: clothes tell people apart where faces of the same lighting do not."""
HSV_RANGES = [0, 180, 0, 256, 0, 256]  # OpenCV's 8-bit HSV ranges


def _hsv_histogram(region: np.ndarray) -> np.ndarray:
    import cv2

    if region.size == 0:
        return np.zeros(int(np.prod(APPEARANCE_BINS)), np.float32)
    hsv = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(APPEARANCE_BINS), HSV_RANGES).ravel().astype(np.float32)
    return hist / max(float(hist.sum()), 1.0)


def face_appearance(image: np.ndarray, box: FaceBox) -> np.ndarray:
    """Appearance of the person of a face box: HSV histograms of the inner face and of the torso below it,
    concatenated, each summing to 1 (the torso part is all zero where the frame ends below the face)."""
    height, width = image.shape[:2]
    w, h = box.x2 - box.x1, box.y2 - box.y1
    fx1, fy1 = int(max(0, box.x1 + APPEARANCE_INNER * w)), int(max(0, box.y1 + APPEARANCE_INNER * h))
    fx2, fy2 = int(min(width, box.x2 - APPEARANCE_INNER * w)), int(min(height, box.y2 - APPEARANCE_INNER * h))
    cx = box.center[0]
    tx1, tx2 = int(max(0, cx - w)), int(min(width, cx + w))
    ty1, ty2 = int(min(height, box.y2 + TORSO_BELOW[0] * h)), int(min(height, box.y2 + TORSO_BELOW[1] * h))
    face = _hsv_histogram(image[fy1:max(fy2, fy1 + 1), fx1:max(fx2, fx1 + 1)])
    torso = _hsv_histogram(image[ty1:ty2, tx1:tx2])
    return np.concatenate([face, torso])


def appearance_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Bhattacharyya distance in [0, 1] between two appearances, over the parts (face, torso) seen in both;
    0 when either is unknown.

    A part is left out where one side lacks it (a close-up whose frame ends below the face has no torso),
    so that the same person framed tighter stays the same person.
    """
    if a is None or b is None:
        return 0.0
    coefficients = [np.sum(np.sqrt(part_a / part_a.sum() * (part_b / part_b.sum())))
                    for part_a, part_b in zip(np.split(a, 2), np.split(b, 2), strict=True)
                    if part_a.sum() > 0 and part_b.sum() > 0]
    if not coefficients:
        return 0.0
    return float(np.sqrt(max(0.0, 1.0 - np.mean(coefficients))))


def with_appearance(image: np.ndarray, faces: Sequence[FaceBox]) -> list[FaceBox]:
    return [replace(face, appearance=face_appearance(image, face)) for face in faces]


SIDES = ("left", "right")
"""Which person of a two-person video a track follows (Aff-Wild2's `<video>_left` / `<video>_right`)."""


def starting_face(faces: Sequence[FaceBox], side: str | None, frame_width: float) -> FaceBox | None:
    """The face a new track starts on: the largest confident one, or for a two-person video the face on
    `side`; a lone face counts for a side only when its centre lies in that half of the frame, so the
    other person alone in view does not start the track."""
    if not faces:
        return None
    if side is None:
        return max(faces, key=lambda face: face.score * (face.x2 - face.x1) * (face.y2 - face.y1))
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES} or None, got '{side}'")
    chosen = min(faces, key=lambda face: face.center[0] if side == "left" else -face.center[0])
    if len(faces) == 1 and (chosen.center[0] < frame_width / 2) != (side == "left"):
        return None
    return chosen


def track_person(detections: Sequence[Sequence[FaceBox]], min_iou: float, max_gap: int,
                 side: str | None = None, frame_width: float = 0.0, max_appearance_distance: float = 1.0,
                 appearance_memory: float = 0.9) -> list[FaceBox | None]:
    """One face per frame that stays on the same person, or None where that person is not seen.

    The track starts on `starting_face` and continues with the face overlapping the last accepted box.
    Faces that carry an appearance must also look like the track (distance to a running mean of its
    appearances, which keeps `appearance_memory` of itself per frame): a shot cut to someone else in the
    same place is not continued, and after `max_gap` frames without the person only a face that looks like
    them restarts the track, so cut-aways to other people are marked absent rather than swapped in.
    """
    track: list[FaceBox | None] = []
    last: FaceBox | None = None
    model: np.ndarray | None = None
    missed = 0
    for faces in detections:
        alike = [face for face in faces if appearance_distance(face.appearance, model) <= max_appearance_distance]
        chosen = None
        if last is not None and alike:
            best = max(alike, key=lambda face: iou(face, last))
            chosen = best if iou(best, last) >= min_iou else None
        if chosen is None and (last is None or missed >= max_gap):
            chosen = starting_face(alike, side, frame_width)
        track.append(chosen)
        if chosen is None:
            missed += 1
            continue
        last, missed = chosen, 0
        if chosen.appearance is not None:
            model = chosen.appearance if model is None else (
                appearance_memory * model + (1 - appearance_memory) * chosen.appearance)
    return track


def crop_box(box: FaceBox, width: int, height: int, margin_px: float, margin_fraction: float = 0.0
             ) -> tuple[int, int, int, int]:
    """Integer crop (x1, y1, x2, y2) around a face: a fixed margin plus a fraction of the box size,
    clipped to the frame."""
    pad_x = margin_px + margin_fraction * (box.x2 - box.x1)
    pad_y = margin_px + margin_fraction * (box.y2 - box.y1)
    x1 = int(np.floor(max(0.0, box.x1 - pad_x)))
    y1 = int(np.floor(max(0.0, box.y1 - pad_y)))
    x2 = int(np.ceil(min(float(width), box.x2 + pad_x)))
    y2 = int(np.ceil(min(float(height), box.y2 + pad_y)))
    return x1, y1, x2, y2


Measured = TypeVar("Measured")
Item = TypeVar("Item")


def on_tracked_faces(frames: Iterable[tuple[int, np.ndarray]], boxes: dict[int, FaceBox],
                     measure: Callable[[np.ndarray, FaceBox], Measured]) -> Iterator[tuple[int, Measured]]:
    """(frame number, measure(image, box)) for every decoded frame that has a tracked face."""
    for number, image in frames:
        box = boxes.get(number)
        if box is not None:
            yield number, measure(image, box)


DETECTOR_RESOURCES = {"retinaface": "retinaface_mobilenet025", "face_landmarker": "mediapipe_face_landmarker",
                      "retinaface_resnet50": "retinaface_resnet50"}
"""The manifest key (resources/manifest.yaml) of the model file of each detector that needs one."""
DETECTOR_ENVS = {"retinaface_resnet50": "retinaface"}
"""The environment (envs/<name>.yaml) of each detector that cannot run in the main one."""


def build_detector(spec: str, settings: dict[str, dict], device: str, weights: dict[str, Path] | None = None,
                   pythons: dict[str, Path] | None = None, engine: str = "auto") -> FaceDetector:
    """A detector from its config name, each part's settings, the model file of each part that needs one and
    the Python of each part that runs in its own environment (DETECTOR_ENVS); `a+b` asks b only for frames in
    which a found nothing. `engine` runs RetinaFace MobileNet-0.25 (avaffect.engines)."""
    weights, pythons = weights or {}, pythons or {}
    for name in spec.split("+"):
        if name in DETECTOR_RESOURCES and name not in weights:
            raise ValueError(f"detector {name} needs its model file (resource {DETECTOR_RESOURCES[name]})")
        if name in DETECTOR_ENVS and name not in pythons:
            raise ValueError(f"detector {name} needs the Python of its environment (envs/{DETECTOR_ENVS[name]}.yaml)")
    detectors: list[FaceDetector] = []
    for name in spec.split("+"):
        if name == "mediapipe":
            mediapipe = settings[name]
            detectors.append(MediaPipeDetector(mediapipe["model_selection"], mediapipe["score_threshold"]))
        elif name == "face_landmarker":
            landmarker = settings[name]
            detectors.append(FaceLandmarkerDetector(Path(weights[name]), landmarker["max_faces"],
                                                    landmarker["score_threshold"]))
        elif name == "retinaface":
            from avaffect.retinaface import RetinaFaceDetector

            retinaface = settings[name]
            detectors.append(RetinaFaceDetector(Path(weights[name]), resolve_device(device),
                                                retinaface["score_threshold"], retinaface["nms_threshold"],
                                                engine=engine))
        elif name == "retinaface_resnet50":
            resnet50 = settings[name]
            detectors.append(RetinaFaceResNet50Detector(Path(weights[name]), Path(pythons[name]),
                                                        resnet50["score_threshold"], resnet50["allow_upscaling"]))
        else:
            raise ValueError(f"unknown face detector '{name}' (expected mediapipe, retinaface, face_landmarker or "
                             f"retinaface_resnet50)")
    return detectors[0] if len(detectors) == 1 else FallbackDetector(detectors)


def numbered_batches(items: Iterable[tuple[int, Item]], batch_size: int) -> Iterator[tuple[list[int], list[Item]]]:
    """(frame numbers, items) of `batch_size` consecutive (frame number, item) pairs at a time; the last
    batch may be shorter."""
    numbers: list[int] = []
    batch: list[Item] = []
    for number, item in items:
        numbers.append(number)
        batch.append(item)
        if len(batch) == batch_size:
            yield numbers, batch
            numbers, batch = [], []
    if batch:
        yield numbers, batch


def detect_all(frames: Iterable[tuple[int, np.ndarray]], detector: FaceDetector, batch_size: int
               ) -> tuple[list[int], list[list[FaceBox]]]:
    """Frame numbers and the faces found in each, with their appearance, detecting `batch_size` frames per
    call."""
    numbers: list[int] = []
    found: list[list[FaceBox]] = []
    for batch_numbers, images in numbered_batches(frames, batch_size):
        numbers.extend(batch_numbers)
        found.extend(with_appearance(image, faces)
                     for image, faces in zip(images, detector.detect_batch(images), strict=True))
    return numbers, found


BOX_COLUMNS = ("x1", "y1", "x2", "y2")


def faces_table(numbers: Sequence[int], track: Sequence[FaceBox | None], counts: Sequence[int], fps: float
                ) -> pd.DataFrame:
    """One row per frame: the tracked face's box, score, detector and 5 landmarks (NaN when absent)."""
    rows = []
    for number, box, count in zip(numbers, track, counts, strict=True):
        row = {"frame": number, "time_s": (number - 1) / fps, "has_face": box is not None, "n_faces": count}
        row |= dict(zip(BOX_COLUMNS, (box.x1, box.y1, box.x2, box.y2) if box else (np.nan,) * 4, strict=True))
        row["score"] = box.score if box else np.nan
        row["detector"] = box.detector if box else ""
        points = box.landmarks if box else np.full((len(LANDMARK_NAMES), 2), np.nan)
        for name, (x, y) in zip(LANDMARK_NAMES, points, strict=True):
            row[f"{name}_x"], row[f"{name}_y"] = float(x), float(y)
        rows.append(row)
    return pd.DataFrame(rows)


def boxes_from_table(table: pd.DataFrame) -> dict[int, FaceBox]:
    """The tracked face of every frame that has one, keyed by frame number."""
    present = table[table["has_face"]]
    boxes = {}
    for row in present.itertuples(index=False):
        points = np.array([[getattr(row, f"{n}_x"), getattr(row, f"{n}_y")] for n in LANDMARK_NAMES], np.float32)
        boxes[int(row.frame)] = FaceBox(row.x1, row.y1, row.x2, row.y2, row.score, points, row.detector)
    return boxes
