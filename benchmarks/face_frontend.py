"""Time the visual front-end (decode + detect + track + crop + embed) against a naive per-frame loop.

    .venv/bin/python benchmarks/face_frontend.py [--video PATH] [--backbone efficientnet_b1] [--rate 5]
        [--batch-size 16] [--device cpu] [--engine auto] [--naive-engine torch] [--weights PATH] [--out PATH]

Both variants see the same frames: the 5 fps label-rate samples of the video (avaffect.media.timeline.sample_frames).

- front-end: the workflow's path: one decoding pass over the video (avaffect.media.video.iter_frames with the
  sampled frame numbers), RetinaFace MobileNet-0.25 with MediaPipe fallback on `--batch-size` frames per call
  (avaffect.face.detectors.detect_all), same-person tracking, 15 px crops, and the static backbone (random weights:
  ImageNet weights are not reachable here; the cost is the same) on `--batch-size` crops per call
  (avaffect.face.backbones.embed_frames), both networks run by `--engine` (config `engine`; auto: onnxruntime on
  the CPU, avaffect.face.engines).
- naive: for each sampled frame, seek to it and decode it (OpenCV), detect on that frame alone, take the
  largest face, crop it, embed it alone, the networks run by `--naive-engine` (eager torch, as a
  straightforward PyTorch loop would).

The timed part starts once the models are ready; getting them ready (loading, and for onnxruntime the export
to ONNX, once per job in the workflow) is reported apart as `prepare_s`.

Each variant runs in its own child process, so its peak resident memory (ru_maxrss) is its own; the
default video is the longest of the shared clips. The defaults take a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from avaffect.core.resources import load_manifest, verify
from avaffect.face.backbones import Preprocessing, StaticConfig, StaticFER, crop_embedder, embed_frames, face_crop
from avaffect.face.boxes import on_tracked_faces
from avaffect.face.detectors import build_detector, detect_all
from avaffect.face.engines import ENGINES, resolve_engine
from avaffect.face.tracking import starting_face, track_person
from avaffect.media.timeline import sample_frames
from avaffect.media.video import iter_frames, probe_video, read_ahead

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("AVAFFECT_SHARED", REPO.parent / "shared"))
CONFIG_DETECTOR = {"retinaface": {"score_threshold": 0.8, "nms_threshold": 0.4},
                   "mediapipe": {"model_selection": 1, "score_threshold": 0.5}}
MARGIN_PX = 15
EMBEDDING_DIM = 256
DROPOUT = 0.2
MIN_IOU, MAX_GAP_S = 0.3, 1.0


def longest_shared_clip() -> Path:
    clips = sorted((SHARED / "media" / "videos").glob("*.mp4"))
    return max(clips, key=lambda clip: probe_video(clip).duration_s)


def build(args, engine: str) -> tuple:
    weights = verify(load_manifest(REPO / "resources" / "manifest.yaml")["retinaface_mobilenet025"],
                     Path(args.weights))
    detector = build_detector("retinaface+mediapipe", CONFIG_DETECTOR, args.device, {"retinaface": weights},
                              engine=engine)
    torch.manual_seed(0)
    model = StaticFER(StaticConfig(args.backbone, "expr", EMBEDDING_DIM, DROPOUT)).to(args.device).eval()
    prep = Preprocessing.of(model)
    return detector, crop_embedder(model, prep, args.device, engine), prep


def front_end(args, frames: np.ndarray, fps: float, width: int) -> tuple[int, float, float]:
    """(frames embedded, seconds, seconds to prepare the models) of the workflow's path."""
    start = time.perf_counter()
    detector, embed, prep = build(args, args.engine)
    prepared, start = time.perf_counter() - start, time.perf_counter()
    numbers, found = detect_all(read_ahead(iter_frames(Path(args.video), frames.tolist()), args.batch_size),
                                detector, args.batch_size)
    sampled_fps = fps * len(frames) / max(frames[-1], 1)
    track = track_person(found, MIN_IOU, max(1, round(MAX_GAP_S * sampled_fps)), frame_width=width)
    boxes = {n: box for n, box in zip(numbers, track, strict=True) if box is not None}
    # The second pass decodes only the frames with a face; crops of a batch are embedded together.
    crops = on_tracked_faces(read_ahead(iter_frames(Path(args.video), boxes), args.batch_size), boxes,
                             lambda image, box: face_crop(image, box, MARGIN_PX, prep.size))
    embedded = embed_frames(embed, crops, args.batch_size)
    return len(embedded), time.perf_counter() - start, prepared


def naive(args, frames: np.ndarray, fps: float, width: int) -> tuple[int, float, float]:
    import cv2

    start = time.perf_counter()
    detector, embed, prep = build(args, args.naive_engine)
    prepared, start = time.perf_counter() - start, time.perf_counter()
    capture = cv2.VideoCapture(str(args.video))
    embedded = 0
    for number in frames:
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(number) - 1)
        ok, bgr = capture.read()
        if not ok:
            raise RuntimeError(f"{args.video}: cannot read frame {number}")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        box = starting_face(detector.detect_batch([image])[0], None, width)
        if box is None:
            continue
        embed(face_crop(image, box, MARGIN_PX, prep.size)[None])
        embedded += 1
    capture.release()
    return embedded, time.perf_counter() - start, prepared


def child(args) -> None:
    torch.set_num_threads(args.threads)
    info = probe_video(Path(args.video))
    frames = sample_frames(info.n_frames, info.fps, args.rate)
    run = front_end if args.mode == "front_end" else naive
    embedded, seconds, prepared = run(args, frames, info.fps, info.width)
    engine = resolve_engine(args.engine if args.mode == "front_end" else args.naive_engine, args.device)
    print(json.dumps({"mode": args.mode, "engine": engine, "frames": len(frames), "embedded": embedded,
                      "seconds": seconds, "prepare_s": prepared,
                      "frames_per_s": len(frames) / seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=None, help="default: the longest clip in ../shared/media/videos")
    parser.add_argument("--backbone", default="efficientnet_b1")
    parser.add_argument("--rate", type=float, default=5.0, help="sampled frames per second")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--engine", default="auto", choices=ENGINES, help="the front-end's (config engine)")
    parser.add_argument("--naive-engine", default="torch", choices=ENGINES, help="the naive loop's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=str(SHARED / "weights" / "retinaface" / "mobilenet0.25_Final.pth"))
    parser.add_argument("--out", default=None, help="write the JSON report here too")
    parser.add_argument("--mode", choices=["front_end", "naive"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    args.video = args.video or str(longest_shared_clip())
    passed = [a for a in sys.argv[1:] if a != "--video" and a != args.video]
    results = {}
    for mode in ("front_end", "naive"):
        out = subprocess.run([sys.executable, __file__, *passed, "--video", args.video, "--mode", mode],
                             check=True, capture_output=True, text=True).stdout
        results[mode] = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(results[mode]), flush=True)
    report = {"video": args.video, "backbone": args.backbone, "device": args.device, "threads": args.threads,
              "batch_size": args.batch_size, "speedup": results["naive"]["seconds"] / results["front_end"]["seconds"],
              **results}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
