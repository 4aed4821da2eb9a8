"""A portable model bundle: everything the submitted systems need to predict a new video, and its predictor.

rule bundle writes results/bundle/ (and results/bundle.tar.gz): per task the chosen system's fitted fusion, the
checkpoint of each model it fuses (at its chosen window), the detectors' weights, the resolved config, the
package versions and a sha256 manifest of every file. A bundle is a file someone else made: `load_bundle`
checks every digest before reading anything else, and nothing in it is read through pickle (torch files with
`weights_only`, safetensors, JSON, YAML read safely). `Bundle.predict_video` runs the workflow's own stages on
one video, the same library functions its scripts call: probe and audio, face detection and tracking, face mesh,
VAD, the extractors, the models, interpolation and smoothing, fusion. See docs/bundle.md.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import avaffect
from avaffect.app.frames import box_table, frame_table, side_of_person
from avaffect.audio.logmel import audio_window_embeddings
from avaffect.audio.vad import segments_seconds, voice_activity_table
from avaffect.core.checkpoints import read_checkpoint
from avaffect.core.progress import Progress, counted
from avaffect.core.resources import sha256_of
from avaffect.core.tables import read_parquet, write_embeddings, write_parquet
from avaffect.corpus.tasks import EXPR_CLASSES, PREDICTION_COLUMNS
from avaffect.face.descriptor import landmark_embeddings
from avaffect.face.detectors import DETECTOR_ENVS, build_detector, tracked_faces
from avaffect.face.landmarks import tracked_landmarks
from avaffect.fusion.postprocess import frame_level, smoothing_settings
from avaffect.fusion.selection import FittedFusion, apply_fitted_fusion, read_fitted_fusion
from avaffect.media.ingest import ingest_video
from avaffect.media.video import iter_frames, read_ahead
from avaffect.media.wav import read_wav
from avaffect.models.prediction import checkpoint_predictions
from avaffect.models.sequences import StepSequence, video_sequences

BUNDLE_FORMAT = 1
"""Layout version of a bundle (bundle.json `format`); a bundle of another format is refused."""
MANIFEST_FILE = "manifest.json"
INFO_FILE = "bundle.json"
CONFIG_FILE = "config.yaml"
ARCHIVE_ROOT = "bundle"
"""The folder a bundle's archive holds."""
EXTRACTOR_MODALITIES = {"landmarks": "face", "logmel": "audio"}
"""The extractors a bundle's predictor runs (the default config's); a model reading another is refused."""
VERSION_PARTS = 2
"""A bundle is read by an avaffect of the same major.minor version as the one that wrote it."""


class BundleError(ValueError):
    """A bundle that cannot be used; the message names the file and what is wrong."""


def installed_packages() -> dict[str, str]:
    """Name and version of every distribution installed in the running environment, by name."""
    found = {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions()}
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def write_bundle(destination: Path, files: Mapping[str, Path], info: dict, config: dict) -> None:
    """A bundle folder at `destination` (replaced): `files` (bundle path -> source) copied in, bundle.json
    (`info` with the format, avaffect's version and the package versions), the resolved config, and the
    manifest of every file's sha256."""
    destination = Path(destination)
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for name, source in files.items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    info = {"format": BUNDLE_FORMAT, "avaffect": avaffect.__version__, **info, "packages": installed_packages()}
    (destination / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    (destination / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=True))
    write_manifest(destination)


def write_manifest(root: Path) -> None:
    """The manifest of a bundle folder: the sha256 of every other file in it, by its path in the bundle."""
    digests = {path.relative_to(root).as_posix(): sha256_of(path) for path in _bundle_files(root)}
    (root / MANIFEST_FILE).write_text(json.dumps({"sha256": digests}, indent=2) + "\n")


def write_archive(bundle: Path, archive: Path) -> None:
    """The bundle folder as a gzipped tar of one folder, ARCHIVE_ROOT."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle, arcname=ARCHIVE_ROOT)


def _bundle_files(root: Path) -> list[Path]:
    """Every file under `root` but the manifest, sorted."""
    return sorted(p for p in root.rglob("*") if not p.is_dir() and p != root / MANIFEST_FILE)


def verify_bundle(root: Path) -> None:
    """Check the manifest against the files: each listed file present with its sha256, none unlisted."""
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        raise BundleError(f"{manifest}: the bundle's manifest is missing (not a bundle, or an incomplete copy)")
    try:
        digests = json.loads(manifest.read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise BundleError(f"{manifest}: not a bundle manifest ({err})") from err
    present = {path.relative_to(root).as_posix() for path in _bundle_files(root)}
    for name in sorted(present - set(digests)):
        raise BundleError(f"{root / name}: not in the bundle's manifest; a bundle holds only the files it lists")
    for name, digest in sorted(digests.items()):
        path = root / name
        if name not in present:
            raise BundleError(f"{path}: listed in the bundle's manifest but missing")
        if sha256_of(path) != digest:
            raise BundleError(f"{path}: sha256 {sha256_of(path)} is not the manifest's {digest} (changed or "
                              "corrupt)")


def _check_version(info: dict, source: Path) -> None:
    if info.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{source}: bundle format {info.get('format')!r}; this avaffect reads format "
                          f"{BUNDLE_FORMAT}")
    written = str(info.get("avaffect", ""))
    if written.split(".")[:VERSION_PARTS] != avaffect.__version__.split(".")[:VERSION_PARTS]:
        raise BundleError(f"{source}: written by avaffect {written or 'of no known version'}, which this avaffect "
                          f"{avaffect.__version__} cannot read: use an avaffect {written} to predict with it, or "
                          "rebuild the bundle with this one (rule bundle)")


def _unsupported(config: dict, models: dict[str, dict]) -> list[str]:
    """What of the config's front end the predictor does not run, in words."""
    problems = []
    for task, task_models in models.items():
        for name in task_models:
            extractor = config["models"][name]["extractor"]
            if extractor not in EXTRACTOR_MODALITIES:
                problems.append(f"model '{name}' ({task}) reads extractor '{extractor}', which is not supported in "
                                f"a bundle yet (supported: {', '.join(EXTRACTOR_MODALITIES)})")
    if config["separation"]["method"] != "none":
        problems.append(f"separation.method '{config['separation']['method']}' is not supported in a bundle yet")
    for detector in config["faces"]["detector"].split("+"):
        if detector in DETECTOR_ENVS:
            problems.append(f"face detector '{detector}' runs in its own environment, which is not supported in a "
                            "bundle yet")
    return problems


@dataclass
class TaskPredictor:
    """One task's chosen system: its models' checkpoints (in the fusion's order) and its fitted fusion."""

    system: str
    checkpoints: dict[str, dict]
    windows_s: dict[str, float]
    fusion: FittedFusion
    prior: np.ndarray


@dataclass
class Bundle:
    """A verified bundle, loaded: the resolved config and each task's predictor."""

    root: Path
    config: dict
    info: dict
    tasks: dict[str, TaskPredictor]
    device: str
    _unpacked: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    def predict_video(self, path: Path, person: str, progress: Callable[[str], None]
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The frame table (app.frames.frame_table) of `person` (PERSONS) in the video at `path`, and the
        tracked face boxes: frame, has_face, x0, y0, x1, y1 in pixels, frames numbered as in the frame table.
        Progress lines go to `progress`."""
        side = side_of_person(person)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such video file")
        with tempfile.TemporaryDirectory(prefix="avaffect-predict-") as scratch:
            stages = _Stages(self, path, side, Path(scratch), progress)
            return stages.frame_table(), stages.boxes()


class _Stages:
    """The workflow's stages for one video, in its order, each stage's table written and read back as the
    workflow's jobs pass it on (so that what a stage reads is bit for bit what the workflow's job reads)."""

    def __init__(self, bundle: Bundle, video: Path, side: str | None, scratch: Path,
                 progress: Callable[[str], None]):
        self.bundle, self.config, self.video, self.scratch, self.log = bundle, bundle.config, video, scratch, progress
        self.sample = video.stem
        config = self.config
        audio = scratch / "audio.wav"
        self.probe = json.loads(json.dumps(ingest_video(video, config["audio"]["sample_rate"], audio, progress,
                                                        progress)))
        self.audio = read_wav(audio)
        progress(f"{video}: {self.probe['n_frames']} frames at {self.probe['fps']:.3f} fps")
        faces = config["faces"]
        detector = build_detector(faces["detector"], {name: faces[name] for name in faces["detector"].split("+")},
                                  bundle.device, _detector_weights(bundle), {}, config["engine"])
        frames = counted(read_ahead(iter_frames(video), faces["batch_size"]),
                         Progress("face detection", "frame", self.probe["n_frames"], progress, config["progress_s"]))
        self.faces = self._passed("faces", tracked_faces(frames, detector, faces["batch_size"], faces["tracking"],
                                                         self.probe["fps"], self.probe["width"], side))
        progress(f"tracked {'the ' + side if side else 'a'} face in {int(self.faces['has_face'].sum())} of "
                 f"{len(self.faces)} frames ({detector.name})")
        self.landmarks = None
        needs_mouth = config["vad"]["method"] in ("mouth", "both")
        if needs_mouth or self._reads("landmarks"):
            self.landmarks = self._passed("landmarks", tracked_landmarks(
                video, self.faces, self.probe["fps"], config["landmarks"]["crop_margin"], progress,
                config["progress_s"]))
        needs_voice = config["vad"]["method"] in ("voice", "both")
        self.vad = self._passed("vad", voice_activity_table(self.probe, config["vad"],
                                                            self.landmarks if needs_mouth else None,
                                                            self.audio if needs_voice else None, progress))
        self.sequences: dict[str, list[StepSequence]] = {}

    def _passed(self, name: str, table: pd.DataFrame) -> pd.DataFrame:
        path = self.scratch / f"{name}.parquet"
        write_parquet(table, path)
        return read_parquet(path)

    def _reads(self, extractor: str) -> bool:
        return any(self.config["models"][name]["extractor"] == extractor
                   for task in self.bundle.tasks.values() for name in task.checkpoints)

    def extractor_sequences(self, extractor: str) -> list[StepSequence]:
        """The step sequences of an extractor's embeddings of the video, embedded once."""
        if extractor not in self.sequences:
            rate_hz = self.config["embeddings"]["rate_hz"]
            if extractor == "landmarks":
                columns, matrix, present = landmark_embeddings(self.landmarks, self.probe, rate_hz)
            else:
                samples, rate = self.audio
                voiced = segments_seconds(self.vad, self.probe["fps"])
                columns, matrix = audio_window_embeddings(samples, rate, voiced, self.probe["n_frames"],
                                                          self.probe["fps"], rate_hz,
                                                          **self.config["embeddings"]["audio"])
                present = np.ones(len(matrix), bool)
            path = self.scratch / f"embeddings_{extractor}.parquet"
            write_embeddings(columns, matrix, present, path)
            self.sequences[extractor] = video_sequences(path, self.sample, EXTRACTOR_MODALITIES[extractor])
            self.log(f"extractor {extractor}: {sum(int(s.present.sum()) for s in self.sequences[extractor])} "
                     "steps with an embedding")
        return self.sequences[extractor]

    def fused(self, task: str) -> pd.DataFrame:
        """The task's fused frame-level predictions (video, frame, *PREDICTION_COLUMNS[task]) of every frame."""
        predictor = self.bundle.tasks[task]
        columns = list(PREDICTION_COLUMNS[task])
        probes = {self.sample: self.probe}
        tables = []
        for name, checkpoint in predictor.checkpoints.items():
            spec = self.config["models"][name]
            what = f"model {name}, task {task}, window {predictor.windows_s[name]:g} s"
            raw = checkpoint_predictions(checkpoint, self.extractor_sequences(spec["extractor"]), task,
                                         self.bundle.device, what=what)
            tables.append(frame_level(raw, [self.sample], probes, columns,
                                      smoothing_settings(spec["smoothing"], self.config["postprocess"]),
                                      max_gap_s=self.config["postprocess"]["max_gap_s"]))
            self.log(f"{task}: model {name} predicted {len(raw)} steps")
        fused, filled = apply_fitted_fusion(tables, predictor.fusion, columns, predictor.prior)
        self.log(f"{task}: system {predictor.system} ({predictor.fusion.method}) fused {len(tables)} model(s); "
                 f"{filled} frames without any prediction take the validation prior")
        return fused

    def frame_table(self) -> pd.DataFrame:
        n_frames = self.probe["n_frames"]
        va = np.full((n_frames, 2), np.nan)
        probabilities = np.full((n_frames, len(EXPR_CLASSES)), np.nan)
        if "va" in self.bundle.tasks:
            va = self.fused("va")[list(PREDICTION_COLUMNS["va"])].to_numpy(float)
        if "expr" in self.bundle.tasks:
            probabilities = self.fused("expr")[list(EXPR_CLASSES)].to_numpy(float)
        return frame_table(self.probe["fps"], va[:, 0], va[:, 1], probabilities,
                           self.faces["has_face"].to_numpy(bool), self.vad["speaking"].to_numpy(bool))

    def boxes(self) -> pd.DataFrame:
        return box_table(self.faces)


def _detector_weights(bundle: Bundle) -> dict[str, Path]:
    return {name: bundle.root / file for name, file in bundle.info.get("detector_weights", {}).items()}


def _unpack(archive: Path) -> tuple[Path, tempfile.TemporaryDirectory]:
    """A bundle archive's folder, extracted (tar's `data` filter: no links out, no absolute paths)."""
    unpacked = tempfile.TemporaryDirectory(prefix="avaffect-bundle-")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(unpacked.name, filter="data")
    except (tarfile.TarError, OSError) as err:
        unpacked.cleanup()
        raise BundleError(f"{archive}: not a readable bundle archive ({err})") from err
    root = Path(unpacked.name) / ARCHIVE_ROOT
    if not root.is_dir():
        unpacked.cleanup()
        raise BundleError(f"{archive}: a bundle archive holds one folder '{ARCHIVE_ROOT}'; this one does not")
    return root, unpacked


def load_bundle(path: Path, device: str | None = None) -> Bundle:
    """The bundle at `path` (its folder or its .tar.gz archive), verified (verify_bundle) and loaded; `device`
    runs its models (None: the bundle config's `device`). A BundleError (or a CheckpointError, a ValueError)
    names the file and what is wrong."""
    path = Path(path)
    unpacked = None
    if path.is_file():
        path, unpacked = _unpack(path)
    elif not path.is_dir():
        raise BundleError(f"{path}: no bundle here (neither a bundle folder nor its archive)")
    verify_bundle(path)
    info = json.loads((path / INFO_FILE).read_text())
    _check_version(info, path / INFO_FILE)
    config = yaml.safe_load((path / CONFIG_FILE).read_text())
    problems = _unsupported(config, info["models"])
    if problems:
        raise BundleError(f"{path}: " + "; ".join(problems))
    tasks = {}
    for task, chosen in info["tasks"].items():
        entries = {name: info["models"][task][name] for name in chosen["models"]}
        checkpoints = {name: read_checkpoint(path / entry["checkpoint"]) for name, entry in entries.items()}
        fusion, prior = read_fitted_fusion(path / chosen["fusion"])
        tasks[task] = TaskPredictor(chosen["system"], checkpoints,
                                    {name: entry["window_s"] for name, entry in entries.items()}, fusion, prior)
    return Bundle(path, config, info, tasks, device or config["device"], unpacked)
