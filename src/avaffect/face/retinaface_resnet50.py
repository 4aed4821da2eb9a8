"""RetinaFace ResNet-50 of the `retina-face` package (TensorFlow), run as a child process in its own environment.

The package needs TensorFlow 2.12 and numpy < 2, so it cannot share the main environment: the detect_faces job
starts `python -m avaffect.face.retinaface_resnet50` once per video with the Python of envs/retinaface.yaml and
streams the frames through it in batches. Each batch goes down stdin as a JSON line with its shape (N, H, W, 3)
and the RGB uint8 bytes; one JSON line comes back up stdout: per frame, the faces as the package reports them (score,
facial_area x1 y1 x2 y2, landmarks by name). End of stdin ends the child.

This module imports only numpy and the standard library at the top, so it runs in both environments; the
package is imported by `main` alone, in the child.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

WEIGHTS_FILE = "retinaface.h5"
"""The file name under which the package looks for its weights, in $DEEPFACE_HOME/.deepface/weights/."""
PACKAGE_EYES = ("right_eye", "left_eye")
PACKAGE_NOSE = "nose"
PACKAGE_MOUTH = ("mouth_right", "mouth_left")
"""The package's landmark names. They name the subject's sides; avaffect.face.detectors orders points by image x."""

Detect = Callable[[np.ndarray], dict]
"""The package's `detect_faces` for one BGR uint8 image: {"face_1": {"score", "facial_area", "landmarks"}}."""


class ChildProtocolError(RuntimeError):
    """A reply of the child process that cannot be read; the message says what is wrong."""


def write_frames(stream: BinaryIO, frames: np.ndarray) -> None:
    """One batch: a JSON line with the array's shape, then its bytes (numpy's .npy reader seeks, pipes do not)."""
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    stream.write((json.dumps({"shape": list(frames.shape)}) + "\n").encode())
    stream.write(frames.tobytes())
    stream.flush()


def read_batches(stream: BinaryIO) -> Iterator[np.ndarray]:
    """The frame batches `write_frames` sent, until the stream ends."""
    while header := stream.readline():
        try:
            shape = tuple(int(n) for n in json.loads(header)["shape"])
        except (ValueError, KeyError, TypeError) as err:
            raise ChildProtocolError(f"not a batch header ({err!r}): {header[:200]!r}") from err
        size = int(np.prod(shape))
        data = stream.read(size)
        if len(data) != size:
            raise ChildProtocolError(f"a batch of shape {shape} ended after {len(data)} of {size} bytes")
        yield np.frombuffer(data, np.uint8).reshape(shape)


def plain_faces(found: dict) -> list[dict]:
    """The package's answer for one image as JSON-ready faces, best score first."""
    faces = [{"score": float(face["score"]), "facial_area": [float(v) for v in face["facial_area"]],
              "landmarks": {name: [float(v) for v in point] for name, point in face["landmarks"].items()}}
             for face in found.values()]
    return sorted(faces, key=lambda face: -face["score"])


def serve(requests: BinaryIO, replies: BinaryIO, detect: Detect) -> int:
    """Answer every frame batch on `requests` with one JSON line on `replies`; returns the frames seen."""
    seen = 0
    for frames in read_batches(requests):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ChildProtocolError(f"expected frames (N, H, W, 3), got an array of shape {frames.shape}")
        # The package reads images as OpenCV does: BGR.
        reply = [plain_faces(detect(np.ascontiguousarray(frame[:, :, ::-1]))) for frame in frames]
        replies.write((json.dumps(reply) + "\n").encode())
        replies.flush()
        seen += len(frames)
    return seen


def parse_reply(line: bytes, n_frames: int) -> list[list[tuple[tuple[float, float, float, float], float,
                                                               np.ndarray]]]:
    """Per frame, (box x1 y1 x2 y2, score, five landmarks (5, 2) in avaffect.face.boxes.LANDMARK_NAMES order) of
    each face in a reply line, best score first; a ChildProtocolError when the line is not a reply for
    `n_frames` frames."""
    try:
        reply = json.loads(line)
    except ValueError as err:
        raise ChildProtocolError(f"not a JSON reply ({err}): {line[:200]!r}") from err
    if not isinstance(reply, list) or len(reply) != n_frames:
        raise ChildProtocolError(f"expected faces of {n_frames} frames, got {str(reply)[:200]}")
    frames = []
    for faces in reply:
        parsed = []
        for face in faces:
            try:
                landmarks = face["landmarks"]
                eyes = sorted(tuple(landmarks[name]) for name in PACKAGE_EYES)
                mouth = sorted(tuple(landmarks[name]) for name in PACKAGE_MOUTH)
                points = np.array([*eyes, landmarks[PACKAGE_NOSE], *mouth], np.float32)
                x1, y1, x2, y2 = (float(v) for v in face["facial_area"])
                parsed.append(((x1, y1, x2, y2), float(face["score"]), points))
            except (KeyError, TypeError, ValueError) as err:
                raise ChildProtocolError(f"a face without score, facial_area or the five landmarks ({err!r}): "
                                         f"{str(face)[:200]}") from err
        frames.append(sorted(parsed, key=lambda found: -found[1]))
    return frames


def weights_home(weights: Path, home: Path) -> Path:
    """A $DEEPFACE_HOME under `home` whose weights folder links WEIGHTS_FILE to `weights`: the package loads
    that file instead of downloading its own."""
    folder = Path(home) / ".deepface" / "weights"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WEIGHTS_FILE).symlink_to(Path(weights).absolute())
    return Path(home)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=Path, required=True, help="the verified retinaface.h5")
    parser.add_argument("--score-threshold", type=float, required=True)
    parser.add_argument("--allow-upscaling", choices=("true", "false"), required=True)
    args = parser.parse_args(argv)
    if not args.weights.is_file():
        raise SystemExit(f"{args.weights}: RetinaFace ResNet-50 weights file missing")
    with tempfile.TemporaryDirectory(prefix="deepface_home_") as home:
        # Read by the package when it is imported and when it loads its weights.
        os.environ["DEEPFACE_HOME"] = str(weights_home(args.weights, Path(home)))
        os.environ["DEEPFACE_BACKEND_ENGINE"] = "tensorflow"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from retinaface import RetinaFace

        model = RetinaFace.build_model()
        upscale = args.allow_upscaling == "true"
        serve(sys.stdin.buffer, sys.stdout.buffer,
              lambda image: RetinaFace.detect_faces(image, threshold=args.score_threshold, model=model,
                                                    allow_upscaling=upscale))


if __name__ == "__main__":
    main()
