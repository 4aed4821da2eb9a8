import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod

# Jobs import the library from this checkout, also in --use-conda environments, which do not install it;
# cluster jobs inherit the variable.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))

from avaffect.audio.augment import augmented_copy_numbers  # noqa: E402
from avaffect.audio.opensmile_features import FEATURE_SETS as OPENSMILE_FEATURE_SETS  # noqa: E402
from avaffect.corpus.tasks import LABELLED_SPLITS, SPLITS  # noqa: E402
from avaffect.corpus.layout import annotation_path, scan_corpus, video_of  # noqa: E402
from avaffect.corpus.demo import corpus_files as demo_corpus_files, demo_manifest  # noqa: E402
from avaffect.face.detectors import DETECTOR_ENVS, DETECTOR_RESOURCES  # noqa: E402
from avaffect.core.resources import load_manifest  # noqa: E402
from avaffect.audio.separation import DIGESTS_FILE, SPLEETER_CHECKPOINT_FILES  # noqa: E402
from avaffect.core.venvs import READY_FILE as VENV_READY_FILE, pip_pins, python_version, venv_python  # noqa: E402
from avaffect.fusion.postprocess import smoothing_settings  # noqa: E402
from avaffect.fusion.systems import NO_FUSION, candidate_systems, resolve_systems  # noqa: E402
from avaffect.models.extractors import ConfigError, check_model_extractors, static_models  # noqa: E402

TASKS = config["tasks"]
MODELS = config["models"]
try:
    # Each system's models per task, sorted; a model is trained for a task when a system fuses it there.
    SYSTEMS = resolve_systems(config["systems"], MODELS, TASKS)
    # The systems results/submission_{task}.txt chooses among ("best": every one, by out-of-fold score).
    SUBMITTED = candidate_systems(config["fusion"]["submit"], SYSTEMS)
except ValueError as error:
    raise WorkflowError(str(error)) from error
CORPUS = Path(config["corpus"]["root"])

RESOURCES = load_manifest(Path(workflow.basedir) / "resources" / "manifest.yaml")
RESOURCE_BY_FILE = {entry.file: key for key, entry in RESOURCES.items()}

MANIFEST = demo_manifest(CORPUS) if config["corpus"]["demo"] else scan_corpus(CORPUS, tuple(TASKS))

# The named static FER models, each the shared `static` settings with its own entry over them; a model of
# `models` reads one by giving its name as extractor.
try:
    STATIC_MODELS = static_models(config["static"], config["static_models"])
    check_model_extractors(MODELS, STATIC_MODELS)
except ConfigError as err:
    raise WorkflowError(str(err)) from None


# Models that train end to end on the waveform (the PDEM backbone's top layers and a head) have their own
# training and prediction rules; the others read embeddings.
END_TO_END_MODELS = sorted(name for name, spec in MODELS.items() if spec["extractor"] == "waveform")
EMBEDDING_MODELS = sorted(set(MODELS) - set(END_TO_END_MODELS))


def alternation(names):
    """A wildcard constraint matching exactly these names; none: a pattern that matches nothing."""
    return "|".join(map(re.escape, names)) or "(?!)"


# A sample is one annotated person: the video itself, or one side of a two-person video (`<video>_left`).
# Video and sample names are any name without a slash, not an alternation of the corpus's names: Snakemake
# writes global constraints into every output pattern and matches each file against them: 600 names in
# them were a fifth of the DAG build time of an Aff-Wild2-size corpus. A name outside the corpus fails in
# corpus_video.
wildcard_constraints:
    task="|".join(TASKS),
    model="|".join(MODELS),
    split="|".join(SPLITS),
    modality="face|audio",
    extractor="|".join(sorted({spec["extractor"] for spec in MODELS.values()})),
    # With no static models the empty alternation matches no path's name: their rules make nothing.
    static_model="|".join(sorted(STATIC_MODELS)),
    video=r"[^/]+",
    sample=r"[^/]+",
    window=r"[0-9.]+",
    system="|".join(SYSTEMS),
    resource_file="|".join(map(re.escape, RESOURCE_BY_FILE)),


def resource_path(key):
    """Where a model file of resources/manifest.yaml lives once fetch_resource has put it there."""
    return f"resources/{RESOURCES[key].file}"


DETECTORS = config["faces"]["detector"].split("+")
DETECTOR_WEIGHTS = {name: key for name, key in DETECTOR_RESOURCES.items() if name in DETECTORS}
DETECTOR_VENVS = {name: env for name, env in DETECTOR_ENVS.items() if name in DETECTORS}


# The openSMILE extractors share one rule; the extractor names the feature set.
OPENSMILE_EXTRACTORS = "|".join(sorted(OPENSMILE_FEATURE_SETS))


PDEM_RESOURCES = {"config": "pdem_config", "preprocessor": "pdem_preprocessor_config", "weights": "pdem_weights"}


def pdem_release(wildcards):
    """The PDEM release's config files and weights, as named inputs."""
    return {name: resource_path(key) for name, key in PDEM_RESOURCES.items()}


def detector_weights(wildcards):
    """The model file of each configured detector that needs one, as named inputs."""
    return {name: resource_path(key) for name, key in DETECTOR_WEIGHTS.items()}


def detector_venvs(wildcards):
    """The built venv of each configured detector that runs in its own environment, as named inputs
    `<detector>_venv`: with or without conda, since a rule has one conda environment and detect_faces needs
    the main one."""
    return {f"{name}_venv": venv_ready(env) for name, env in DETECTOR_VENVS.items()}


def vad_inputs(wildcards):
    """Landmarks for the mouth, the separated audio for the voice, as the vad method needs them."""
    method = config["vad"]["method"]
    inputs = {}
    if method in ("mouth", "both"):
        inputs["landmarks"] = f"results/landmarks/{wildcards.sample}.parquet"
    if method in ("voice", "both"):
        inputs["audio"] = sample_audio(wildcards)
    return inputs


def corpus_video(video):
    if video not in MANIFEST.videos:
        raise WorkflowError(f"{video}: no such video in the corpus at {CORPUS}")
    return str(MANIFEST.videos[video])


def video_file(wildcards):
    return corpus_video(wildcards.video)


def sample_video(wildcards):
    """The video file of a sample; both sides of a two-person video read the same file."""
    return corpus_video(video_of(wildcards.sample))


def probe_of(video):
    """A video's probe as an input. Ancient: the probe is a function of the video alone, and every stage that
    reads it also reads the video or a file made from it, so a rerun of ingest_video for its audio (a new
    audio.sample_rate) rewrites the same probe without rerunning the face stages."""
    return ancient(f"results/probe/{video}.json")


def sample_probe(wildcards):
    return probe_of(video_of(wildcards.sample))


def sample_audio(wildcards):
    return audio_of(wildcards.sample)


def audio_of(sample):
    """The audio of a sample's video that the audio stages read: Spleeter's vocals, or with separation.method
    none the extracted audio itself, not a copy of it. Both sides of a two-person video read the same file."""
    separated = config["separation"]["method"] == "spleeter"
    return f"results/audio/{'vocals' if separated else 'raw'}/{video_of(sample)}.wav"


def split_samples(task, split):
    return MANIFEST.samples[task][split]


def sample_set_file(model, task, split):
    """The file listing what the model jobs of this split read (avaffect.corpus.sample_sets.SampleSet)."""
    spec = MODELS[model]
    return f"results/sets/{spec['modality']}/{spec['extractor']}/{task}/{split}.json"


def set_embeddings(wildcards):
    return [
        f"results/embeddings/{wildcards.modality}/{wildcards.extractor}/{s}.parquet"
        for s in split_samples(wildcards.task, wildcards.split)
    ]


def set_augmented(wildcards):
    """The augmented copies of the training samples' audio embeddings: they only ever join the training split."""
    if wildcards.modality != "audio" or wildcards.split != "train":
        return []
    return [
        augmented_file(wildcards.extractor, copy, s)
        for copy in augmented_copy_numbers(config["augmentation"])
        for s in split_samples(wildcards.task, "train")
    ]


def augmented_file(extractor, copy, sample):
    return f"results/embeddings/audio/{extractor}/augmented/{copy}/{sample}.parquet"


def augmented_outputs(extractor):
    """The outputs of one sample's augmented-embedding job: a file per copy, the sample a wildcard."""
    return [augmented_file(extractor, copy, "{sample}") for copy in augmented_copy_numbers(config["augmentation"])]


def probes(task, splits):
    """The probe of every video the samples of these splits read, each once."""
    videos = {video_of(s) for split in splits for s in split_samples(task, split)}
    return [probe_of(v) for v in sorted(videos)]


def annotations(task, split):
    return [str(annotation_path(CORPUS, task, split, s)) for s in MANIFEST.samples[task][split]]


def samples_by_split(task, splits):
    return {split: MANIFEST.samples[task][split] for split in splits}


def section(*keys):
    """A config section with sorted keys: Snakemake compares params by their text, so the order of keys
    in a user's YAML must not count as a change."""
    value = config
    for key in keys:
        value = value[key]
    return sorted_keys(value)


def sorted_keys(value):
    """A copy with every mapping's keys sorted, at any depth."""
    if isinstance(value, dict):
        return {k: sorted_keys(value[k]) for k in sorted(value)}
    return value


def window_tags(model):
    """The swept window lengths of a model as path tags: 4.0 -> "4"."""
    return [f"{w:g}" for w in MODELS[model]["windows_s"]]


def model_settings(model):
    """What training reads of a model's config, in canonical order."""
    return section("models", model)


def family_settings(model):
    """The shared settings of the model's family; only these may trigger its retraining."""
    family = MODELS[model]["family"]
    if family == "kelm":
        return {"kelm": section("kelm")}
    if model in END_TO_END_MODELS:
        return end_to_end_settings(family)
    if family in ("audio_gru", "audio_transformer"):
        return {"audio_model": section("audio_model"), "training": section("training")}
    settings = {"transformer": section("transformer"), "training": section("training")}
    if family == "tcn_transformer":
        settings["tcn"] = section("tcn")
    if MODELS[model]["modality"] == "audio":
        # Every audio model's EXPR cross-entropy is label-smoothed.
        settings["audio_model"] = {"label_smoothing": config["audio_model"]["label_smoothing"]}
    return settings


def end_to_end_settings(family):
    """What an end-to-end model's training reads besides its own entry: `end_to_end`, the label smoothing (and
    for audio_gru / audio_transformer the architecture) of `audio_model`, and the waveform augmentations (not
    the copies, which are for embedding models) when `end_to_end.augment` is on; only these may retrain it."""
    # The head's dropout is end_to_end.dropout.
    used = ["label_smoothing"] if family == "linear" else [k for k in config["audio_model"] if k != "dropout"]
    settings = {
        "end_to_end": section("end_to_end"),
        "audio_model": {k: section("audio_model")[k] for k in sorted(used)},
    }
    if config["end_to_end"]["augment"]:
        # Drawn from end_to_end.seed, not from the copies' seed.
        settings["augmentation"] = {k: v for k, v in section("augmentation").items() if k not in ("copies", "seed")}
    return settings


def end_to_end_inputs(task, splits):
    """The audio (of the videos), voice activity, probes and, for labelled splits, annotations of the samples
    of these splits that an end-to-end model's job reads."""
    samples = sorted({s for split in splits for s in split_samples(task, split)})
    return {
        "audio": sorted({audio_of(s) for s in samples}),
        "vad": [f"results/vad/{s}.parquet" for s in samples],
        "probes": probes(task, splits),
        "annotations": [a for split in splits if split in LABELLED_SPLITS for a in annotations(task, split)],
    }


def model_smoothing(model):
    return smoothing_settings(MODELS[model]["smoothing"], config["postprocess"])


def sample_file(wildcards):
    """The organisers' sample submission of the task, when the config names one."""
    path = config["submission"]["sample_files"].get(wildcards.task)
    return {"sample": path} if path else {}


def system_models(system, task):
    return list(SYSTEMS[system].models[task])


def system_predictions(split):
    """The smoothed predictions of a system's models for the task of the wildcards, in the system's order."""
    return lambda w: [f"results/predictions/{m}/{w.task}/{split}.parquet" for m in system_models(w.system, w.task)]


def fusion_settings(system):
    """What a system's fuse job reads of the fusion section: only its method's settings, so that changing
    another method's settings reruns nothing of it."""
    method = SYSTEMS[system].method
    if method == NO_FUSION:
        return {}
    settings = {"folds": config["fusion"]["folds"], "seed": config["fusion"]["seed"]}
    if method == "rf":
        return settings | {key: config["fusion"][key] for key in ("rf_max_rows", "rf_max_samples", "rf_trees")}
    return settings | {"draws": config["fusion"]["draws"], "search_max_rows": config["fusion"]["search_max_rows"]}


STATIC_SPLITS = list(LABELLED_SPLITS)


def static_task(static_model):
    return STATIC_MODELS[static_model]["task"]


def static_samples(static_model):
    """Samples whose labelled frames fine-tune the static model (those of its task)."""
    return sorted({s for split in STATIC_SPLITS for s in split_samples(static_task(static_model), split)})


def static_settings(static_model):
    """What train_static reads of a static model's settings, in canonical order."""
    return sorted_keys(STATIC_MODELS[static_model])


def static_imagenet_resource(static_model):
    """The manifest key of the static model's backbone's ImageNet weights."""
    return f"timm_{STATIC_MODELS[static_model]['backbone']}"


def static_init_weights(wildcards):
    """What the static model starts from, as a named input: the user's pretrained FER checkpoint (so that a
    changed file reruns train_static), else the backbone's ImageNet weights when the config asks for them."""
    settings = STATIC_MODELS[wildcards.static_model]
    if settings["init_checkpoint"]["path"]:
        return {"init_checkpoint": settings["init_checkpoint"]["path"]}
    if not settings["imagenet_init"]:
        return {}
    return {"imagenet": resource_path(static_imagenet_resource(wildcards.static_model))}


def check_init_checkpoints():
    """Each static model's pretrained FER checkpoint, when it names one, exists and has its sha256."""
    for name, settings in STATIC_MODELS.items():
        path = settings["init_checkpoint"]["path"]
        if path and not Path(path).is_file():
            raise WorkflowError(f"config static_models.{name}: init_checkpoint.path {path} is not a file")
        if path and not settings["init_checkpoint"]["sha256"]:
            raise WorkflowError(
                f"config static_models.{name}: init_checkpoint {path} needs its sha256 (init_checkpoint.sha256, "
                "in static or in the model's entry)"
            )


check_init_checkpoints()


if not config["separation"]["spleeter"]["overlap_s"] < config["separation"]["spleeter"]["chunk_s"]:
    raise WorkflowError("config separation.spleeter: overlap_s must be shorter than chunk_s")
if config["engine"] == "onnxruntime" and config["device"].startswith("cuda"):
    raise WorkflowError(
        f"config engine onnxruntime runs on the CPU only, but device is {config['device']}: use engine torch or auto"
    )
VENV_ENVS = ["spleeter", "retinaface"]
"""envs/<name>.yaml files whose pins rule build_venv can install into .snakemake/venvs/<name>."""


def env_file(name):
    return Path(workflow.basedir) / "envs" / f"{name}.yaml"


def venv_ready(name):
    """The file rule build_venv writes last into the venv of envs/<name>.yaml."""
    return f".snakemake/venvs/{name}/{VENV_READY_FILE}"


# --use-conda runs the Spleeter rule in envs/spleeter.yaml; otherwise in a venv built from the same pins.
SPLEETER_IN_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
SPLEETER_MODEL_DIR = "resources/spleeter/2stems"
SPLEETER_MODEL_FILES = [f"{SPLEETER_MODEL_DIR}/{name}" for name in (*SPLEETER_CHECKPOINT_FILES, DIGESTS_FILE)]


def spleeter_runtime(wildcards):
    """The built venv as an input, unless conda provides the environment."""
    return {} if SPLEETER_IN_CONDA else {"venv": venv_ready("spleeter")}


# What rule bundle reads, per model, task, window and system.
BUNDLE_FILES = {
    "selection": "results/models/{model}/{task}/selected.json",
    "checkpoint": "results/models/{model}/{task}/w{window}/checkpoint.pt",
    "fusion": "results/fusion/{task}/{system}/fusion.safetensors",
    "parameters": "results/fusion/{task}/{system}/parameters.json",
}
# The fine-tuned weights an extractor reads, for a bundle whose models read it: each static model's checkpoint.
EXTRACTOR_WEIGHTS = {name: f"results/static/{name}/checkpoint.pt" for name in STATIC_MODELS}


def submitted_models():
    """(model, task) of every model a system the submission chooses among fuses."""
    return sorted({(m, task) for system in SUBMITTED for task in TASKS for m in system_models(system, task)})


def extractor_weights(wildcards):
    """The fine-tuned weights of the extractors the submitted systems' models read, as named inputs."""
    extractors = {MODELS[m]["extractor"] for m, _ in submitted_models()}
    return {name: path for name, path in EXTRACTOR_WEIGHTS.items() if name in extractors}
