"""Throughput of `avaffect predict --zero-shot fer` (default detector, config faces.detector) against a naive
per-frame loop, on the longest shared clip.

    .venv/bin/python benchmarks/predict_throughput.py [--video PATH] [--threads 2] [--out PATH]

- predict: what the command does for one video, without the overlay: probing, one decoding pass read ahead of
  the detector in batches, tracking, a second pass over the frames with a face for fer's crops in batches,
  Silero VAD on the audio, then the CSV, Parquet, figure and summary (avaffect.app.cli.predict_one).
- naive: for each frame, seek to it and decode it (OpenCV), detect on it alone, take the largest face, crop it
  and classify it alone.

Both predict every frame. Figures: frames per second, and the real-time factor, the clip's duration over the
time taken (1: as fast as the video plays; above 1: faster). Loading the models is timed apart (`prepare_s`).
Goal: at least 25 frames/s on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

import torch
import yaml

from avaffect.app.cli import parser, predict_one
from avaffect.app.zero_shot import fer_zero_shot
from avaffect.core.resources import load_manifest
from avaffect.face.fer_xception import face_input, fer_embedder
from avaffect.face.tracking import starting_face
from avaffect.media.video import probe_video

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVAFFECT_SHARED", REPO.parent / "shared"))


def longest_shared_clip() -> Path:
    clips = sorted((SHARED / "media" / "videos").glob("*.mp4"))
    return max(clips, key=lambda clip: probe_video(clip).duration_s)


def naive(predictor, video: Path, n_frames: int, width: int) -> int:
    """Frames classified by the one-at-a-time loop."""
    import cv2

    classify = fer_embedder(predictor.model, predictor.device)
    capture = cv2.VideoCapture(str(video))
    classified = 0
    for number in range(1, n_frames + 1):
        capture.set(cv2.CAP_PROP_POS_FRAMES, number - 1)
        ok, bgr = capture.read()
        if not ok:
            raise RuntimeError(f"{video}: cannot read frame {number}")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        box = starting_face(predictor.detector.detect_batch([image])[0], None, width)
        if box is None:
            continue
        classify(face_input(image, box, predictor.fer["crop_margin_px"], predictor.model.input_size)[None])
        classified += 1
    capture.release()
    return classified


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument("--video", type=Path, default=None, help="default: the longest clip of ../shared")
    arguments.add_argument("--threads", type=int, default=2)
    arguments.add_argument("--out", type=Path, default=None, help="write the JSON report here too")
    args = arguments.parse_args()
    torch.set_num_threads(args.threads)
    video = args.video or longest_shared_clip()
    info = probe_video(video)
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    start = time.perf_counter()
    predictor = fer_zero_shot(config, REPO / "resources", load_manifest(REPO / "resources" / "manifest.yaml"),
                              "cpu", config["faces"]["detector"])
    prepare_s = time.perf_counter() - start
    report = {"video": str(video), "frames": info.n_frames, "duration_s": info.duration_s, "threads": args.threads,
              "detector": predictor.detector.name, "prepare_s": prepare_s}
    with tempfile.TemporaryDirectory() as out:
        command = parser().parse_args(["predict", "--zero-shot", "fer", "--out", out, str(video)])
        start = time.perf_counter()
        predict_one(predictor, video, command, io.StringIO())
        report["predict_s"] = time.perf_counter() - start
    start = time.perf_counter()
    report["naive_classified"] = naive(predictor, video, info.n_frames, info.width)
    report["naive_s"] = time.perf_counter() - start
    for mode in ("predict", "naive"):
        report[f"{mode}_frames_per_s"] = info.n_frames / report[f"{mode}_s"]
        report[f"{mode}_real_time_factor"] = info.duration_s / report[f"{mode}_s"]
    report["speedup"] = report["naive_s"] / report["predict_s"]
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
