"""Time and peak memory of the audio front-end on the longest shared clip, extrapolated to Aff-Wild2.

    .venv/bin/python benchmarks/audio_frontend.py [--clip PATH] [--profile PATH] [--device auto] [--out PATH]

Stages, each timed on its own: audio extraction (16 kHz mono), Silero VAD, mouth VAD (MediaPipe face
detection, tracking and face mesh on every frame, then the mouth hysteresis), PDEM embeddings on 4 s windows
every 2 s covering the whole clip (the worst case: every frame voiced), and the openSMILE extractors
(eGeMAPSv02 and ComParE_2016 descriptors) on the same windows. PDEM runs with RANDOM weights built
from ../shared/weights/pdem-config, since the real ones cannot be had here: the compute is the same, the
values are not. Vocal separation (Spleeter, in its own environment) has its own benchmark:
benchmarks/spleeter_separation.py.

Peak memory is the process's maximum resident set after each stage (it only grows). The per-minute cost of
each stage is its time divided by the clip's minutes; the Aff-Wild2 estimate multiplies it by the corpus's
minutes from the scale profile (594 videos, frame counts and rates).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from avaffect.audio.opensmile_features import FEATURE_SETS, descriptor_extractor, opensmile_window_embeddings
from avaffect.audio.pdem import build_pdem, pdem_window_embeddings
from avaffect.audio.vad import VoiceActivity, mouth_vad
from avaffect.core.devices import resolve_device
from avaffect.face.boxes import on_tracked_faces
from avaffect.face.detectors import MediaPipeDetector, detect_all
from avaffect.face.landmarks import FaceMesh, landmarks_table
from avaffect.face.tracking import track_person
from avaffect.media.timeline import voiced_windows
from avaffect.media.video import iter_frames, probe_video
from avaffect.media.wav import extract_audio

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEFAULT_CLIP = SHARED / "media" / "videos" / "liveportrait_d10.mp4"
DEFAULT_PROFILE = SHARED / "data" / "affwild2_scale_profile.csv"
SECONDS_PER_MINUTE = 60.0
KB_PER_MB = 1024.0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KB_PER_MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--profile", type=Path, default=DEFAULT_PROFILE)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=None, help="write the report as JSON here too")
    args = parser.parse_args()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    rate = config["audio"]["sample_rate"]
    audio, vad, faces = config["embeddings"]["audio"], config["vad"], config["faces"]
    device = resolve_device(args.device)
    info = probe_video(args.clip)
    stages: dict[str, dict[str, float]] = {}

    def timed(name, run):
        start = time.perf_counter()
        result = run()
        stages[name] = {"seconds": time.perf_counter() - start, "peak_mb": peak_mb()}
        return result

    samples = timed("extract_audio", lambda: extract_audio(args.clip, rate))
    voice = VoiceActivity()
    timed("silero_vad", lambda: voice.speech_seconds(samples, rate, **vad["voice"]))

    def mouth():
        numbers, found = detect_all(iter_frames(args.clip), MediaPipeDetector(**faces["mediapipe"]),
                                    faces["batch_size"])
        track = track_person(found, faces["tracking"]["min_iou"],
                             max(1, round(faces["tracking"]["max_gap_s"] * info.fps)))
        boxes = {n: box for n, box in zip(numbers, track, strict=True) if box is not None}
        mesh = FaceMesh(config["landmarks"]["crop_margin"])
        points = dict(on_tracked_faces(iter_frames(args.clip, boxes), boxes, mesh.key_points))
        opening = landmarks_table(numbers, points, info.fps)["mouth_open"].to_numpy(float)
        settings = {k: v for k, v in vad.items() if k not in ("method", "voice")}
        return mouth_vad(opening, info.fps, **settings)

    timed("mouth_vad", mouth)
    duration = len(samples) / rate
    windows = voiced_windows([(0.0, duration)], duration, audio["window_s"], audio["step_s"])
    torch.manual_seed(0)
    model, extractor = build_pdem(SHARED / "weights" / "pdem-config")
    timed("pdem_embeddings", lambda: pdem_window_embeddings(
        model, extractor, samples, rate, windows, config["embeddings"]["rate_hz"],
        config["embeddings"]["pdem"]["batch_size"], device))
    for name in FEATURE_SETS:
        smile = descriptor_extractor(name)
        timed(f"{name}_embeddings", lambda smile=smile: opensmile_window_embeddings(
            smile, samples, rate, windows, config["embeddings"]["rate_hz"]))
    profile = pd.read_csv(args.profile)
    corpus_minutes = float((profile["n_frames"] / profile["fps"]).sum() / SECONDS_PER_MINUTE)
    clip_minutes = duration / SECONDS_PER_MINUTE
    for stage in stages.values():
        stage["seconds_per_minute"] = stage["seconds"] / clip_minutes
        stage["affwild2_hours"] = stage["seconds_per_minute"] * corpus_minutes / 3600.0
    report = {"clip": str(args.clip), "clip_s": duration, "fps": info.fps, "device": device,
              "pdem_windows": len(windows), "affwild2_minutes": corpus_minutes, "stages": stages,
              "torch_threads": torch.get_num_threads()}
    print(json.dumps(report, indent=2, default=float))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=float))
    print(f"affwild2: {corpus_minutes:.0f} min of video; total front-end estimate "
          f"{np.sum([s['affwild2_hours'] for s in stages.values()]):.1f} h on {device}")


if __name__ == "__main__":
    main()
