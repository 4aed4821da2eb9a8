"""Voice activity on the shared real recordings: mouth (MediaPipe lips) against Silero VAD.

These clips have no voice-activity labels. The reference is Silero VAD (the model inside the silero-vad wheel)
on the clip's own audio, and the expectations are the issue's: on the frontal talking heads the mouth VAD
agrees with Silero on at least 80 % of frames; the LivePortrait clips, whose audio is mostly not speech, are
mostly (at least 75 % of frames; Silero itself calls 80 % and 91 % of them non-speech) unvoiced under
`both`. Settings are the shipped config defaults (the mouth thresholds were chosen on these clips).
"""

import numpy as np
import pytest
import yaml
from conftest import REPO

from avaffect.audio.vad import VoiceActivity, combine, frames_in_segments, mouth_vad
from avaffect.face.boxes import on_tracked_faces
from avaffect.face.detectors import MediaPipeDetector, detect_all
from avaffect.face.landmarks import FaceMesh, landmarks_table
from avaffect.face.tracking import track_person
from avaffect.media.video import iter_frames, probe_video
from avaffect.media.wav import extract_audio

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
TALKING = ["retalking_face_1", "retalking_face_2", "retalking_face_3", "retalking_face_4", "WDA_KatieHill_000"]
NON_SPEECH = ["liveportrait_d10", "liveportrait_d12"]
MIN_AGREEMENT = 0.8
MIN_UNVOICED = 0.75


@pytest.fixture(scope="module")
def voice():
    return VoiceActivity()


def mouth_and_voice(path, voice):
    """Per-frame mouth and Silero flags of a clip, the way the workflow computes them."""
    info = probe_video(path)
    faces, tracking = CONFIG["faces"], CONFIG["faces"]["tracking"]
    numbers, found = detect_all(iter_frames(path), MediaPipeDetector(**faces["mediapipe"]), faces["batch_size"])
    track = track_person(found, tracking["min_iou"], max(1, round(tracking["max_gap_s"] * info.fps)),
                         max_appearance_distance=tracking["max_appearance_distance"],
                         appearance_memory=tracking["appearance_memory"])
    boxes = {n: box for n, box in zip(numbers, track, strict=True) if box is not None}
    mesh = FaceMesh(CONFIG["landmarks"]["crop_margin"])
    points = dict(on_tracked_faces(iter_frames(path, boxes), boxes, mesh.key_points))
    opening = landmarks_table(numbers, points, info.fps)["mouth_open"].to_numpy(float)
    settings = {k: v for k, v in CONFIG["vad"].items() if k not in ("method", "voice")}
    mouth = mouth_vad(opening, info.fps, **settings)
    rate = CONFIG["audio"]["sample_rate"]
    speech = voice.speech_seconds(extract_audio(path, rate), rate, **CONFIG["vad"]["voice"])
    return mouth, frames_in_segments(np.asarray(numbers), info.fps, speech)


@pytest.mark.parametrize("clip", TALKING)
def test_mouth_agrees_with_silero_on_talking_heads(shared, voice, clip):
    mouth, speech = mouth_and_voice(shared / "media" / "videos" / f"{clip}.mp4", voice)
    assert speech.mean() > 0.3  # the clip does hold speech, so agreement is not agreement on silence
    agreement = (mouth == speech).mean()
    assert agreement >= MIN_AGREEMENT, f"{clip}: mouth and Silero agree on {agreement:.0%} of frames"


@pytest.mark.parametrize("clip", NON_SPEECH)
def test_non_speech_clips_are_mostly_unvoiced_under_both(shared, voice, clip):
    mouth, speech = mouth_and_voice(shared / "media" / "videos" / f"{clip}.mp4", voice)
    assert mouth.any()  # the expressive face does move its lips: `both` is what keeps these frames out
    unvoiced = 1 - combine("both", mouth, speech).mean()
    assert unvoiced >= MIN_UNVOICED, f"{clip}: only {unvoiced:.0%} of frames unvoiced under both"
