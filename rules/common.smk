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
PDEM_FINETUNE_LAYERS = config["embeddings"]["pdem"]["finetune_layers"]
PDEM_FINETUNE_TASK = config["embeddings"]["pdem"]["finetune"]["task"]
PDEM_FINETUNED_WEIGHTS = "results/pdem/finetuned/model.safetensors"
# With fine-tuning, the embedding jobs read the workflow's own weights and verify only the release's configs.
PDEM_EMBEDDING_RESOURCES = {
    name: key for name, key in PDEM_RESOURCES.items() if not (PDEM_FINETUNE_LAYERS and name == "weights")
}
if PDEM_FINETUNE_LAYERS and PDEM_FINETUNE_TASK not in TASKS:
    raise WorkflowError(
        f"config embeddings.pdem.finetune.task: '{PDEM_FINETUNE_TASK}' is not among tasks {TASKS}, so its labels "
        "are not read"
    )


def pdem_embedding_inputs(wildcards):
    """The release's config files and the weights the embeddings use: fine-tuned ones when configured."""
    inputs = {name: resource_path(key) for name, key in PDEM_EMBEDDING_RESOURCES.items()}
    return inputs | ({"weights": PDEM_FINETUNED_WEIGHTS} if PDEM_FINETUNE_LAYERS else {})


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
    if family in ("audio_gru", "audio_transformer"):
        return {"audio_model": section("audio_model"), "training": section("training")}
    settings = {"transformer": section("transformer"), "training": section("training")}
    if family == "tcn_transformer":
        settings["tcn"] = section("tcn")
    return settings


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


PDEM_FINETUNE_SPLITS = list(LABELLED_SPLITS)


def pdem_finetune_samples():
    """Samples whose labelled voiced windows fine-tune the PDEM backbone."""
    return sorted({s for split in PDEM_FINETUNE_SPLITS for s in split_samples(PDEM_FINETUNE_TASK, split)})


STATIC_TASK = config["static"]["task"]
STATIC_SPLITS = list(LABELLED_SPLITS)


def static_samples():
    """Samples whose labelled frames fine-tune the static backbone."""
    return sorted({s for split in STATIC_SPLITS for s in split_samples(STATIC_TASK, split)})


STATIC_INIT = config["static"]["init_checkpoint"]


def static_init_weights(wildcards):
    """What the static model starts from, as a named input: the user's pretrained FER checkpoint (so that a
    changed file reruns train_static), else the backbone's ImageNet weights when the config asks for them."""
    if STATIC_INIT["path"]:
        return {"init_checkpoint": STATIC_INIT["path"]}
    if not config["static"]["imagenet_init"]:
        return {}
    return {"imagenet": resource_path(f"timm_{config['static']['backbone']}")}


if STATIC_INIT["path"] and not Path(STATIC_INIT["path"]).is_file():
    raise WorkflowError(f"config static.init_checkpoint.path: {STATIC_INIT['path']} is not a file")
if STATIC_INIT["path"] and not STATIC_INIT["sha256"]:
    raise WorkflowError(
        f"config static.init_checkpoint: {STATIC_INIT['path']} needs its sha256 (static.init_checkpoint.sha256)"
    )


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
# The fine-tuned weights an extractor reads, for a bundle whose models read it.
EXTRACTOR_WEIGHTS = {"static": "results/static/checkpoint.pt"} | (
    {"pdem": PDEM_FINETUNED_WEIGHTS} if PDEM_FINETUNE_LAYERS else {}
)


def submitted_models():
    """(model, task) of every model a system the submission chooses among fuses."""
    return sorted({(m, task) for system in SUBMITTED for task in TASKS for m in system_models(system, task)})


def extractor_weights(wildcards):
    """The fine-tuned weights of the extractors the submitted systems' models read, as named inputs."""
    extractors = {MODELS[m]["extractor"] for m, _ in submitted_models()}
    return {name: path for name, path in EXTRACTOR_WEIGHTS.items() if name in extractors}
