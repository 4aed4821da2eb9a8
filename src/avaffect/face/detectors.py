"""Face detectors behind one interface: MediaPipe, the Face Landmarker, RetinaFace (MobileNet-0.25 and
ResNet-50), chained so that each is asked only where the ones before found nothing."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from itertools import groupby
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from avaffect.core.devices import resolve_device
from avaffect.face.boxes import FaceBox
from avaffect.face.tracking import faces_table, track_person, with_appearance
from avaffect.media.video import numbered_batches


class FaceDetector(Protocol):
    name: str

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        """Faces of each RGB uint8 image (H, W, 3), best score first."""
        ...


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
    child process (avaffect.face.retinaface_resnet50) in the Python of envs/retinaface.yaml loads the model once
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
        self._command = [str(python), "-m", "avaffect.face.retinaface_resnet50",
                         "--weights", str(Path(weights).absolute()),
                         "--score-threshold", str(score_threshold),
                         "--allow-upscaling", "true" if allow_upscaling else "false"]
        self._child = subprocess.Popen(self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=self._stderr, env=env)

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceBox]]:
        from avaffect.face.retinaface_resnet50 import ChildProtocolError, parse_reply, write_frames

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


DETECTOR_RESOURCES = {"retinaface": "retinaface_mobilenet025", "face_landmarker": "mediapipe_face_landmarker",
                      "retinaface_resnet50": "retinaface_resnet50"}
"""The manifest key (resources/manifest.yaml) of the model file of each detector that needs one."""
DETECTOR_ENVS = {"retinaface_resnet50": "retinaface"}
"""The environment (envs/<name>.yaml) of each detector that cannot run in the main one."""


def build_detector(spec: str, settings: dict[str, dict], device: str, weights: dict[str, Path] | None = None,
                   pythons: dict[str, Path] | None = None, engine: str = "auto") -> FaceDetector:
    """A detector from its config name, each part's settings, the model file of each part that needs one and
    the Python of each part that runs in its own environment (DETECTOR_ENVS); `a+b` asks b only for frames in
    which a found nothing. `engine` runs RetinaFace MobileNet-0.25 (avaffect.face.engines)."""
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
            from avaffect.face.retinaface import RetinaFaceDetector

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


def tracked_faces(frames: Iterable[tuple[int, np.ndarray]], detector: FaceDetector, batch_size: int,
                  tracking: dict, fps: float, frame_width: float, side: str | None) -> pd.DataFrame:
    """The faces table (`faces_table`) of a video's decoded frames: every frame's faces detected, and one
    person followed across them with the config `faces.tracking` settings; `side` is the person of a
    two-person video ("left" / "right"), None for the largest face."""
    numbers, found = detect_all(frames, detector, batch_size)
    track = track_person(found, tracking["min_iou"], max(1, round(tracking["max_gap_s"] * fps)), side, frame_width,
                         max_appearance_distance=tracking["max_appearance_distance"],
                         appearance_memory=tracking["appearance_memory"])
    return faces_table(numbers, track, [len(faces) for faces in found], fps)
