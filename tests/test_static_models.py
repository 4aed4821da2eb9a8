"""Named static models (config static_models): their settings from the shared `static` section, the names a model
may read, the config files and schema, and `inputs`: which columns of a static model's embedding files a model
trains and predicts on."""

import copy

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate
from test_envs import merged

from avaffect.core.tables import HEAD_COLUMN_PREFIX, write_embeddings
from avaffect.corpus.annotations import HEADERS
from avaffect.corpus.layout import annotation_path
from avaffect.corpus.tasks import EXPR_CLASSES
from avaffect.media.timeline import sample_frames
from avaffect.models.extractors import (
    BUILTIN_EXTRACTORS,
    ConfigError,
    check_model_extractors,
    model_inputs,
    static_model_settings,
    static_models,
)
from avaffect.models.functionals import KelmSettings, predict_kelm, train_kelm
from avaffect.models.sequences import labelled_sequences, video_sequences

SCHEMA = str(REPO / "config" / "schema.yaml")


def config_file(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


DEFAULTS = config_file("config.yaml")
SHARED = DEFAULTS["static"]


def face_model(extractor: str, **keys) -> dict:
    return {"family": "linear", "modality": "face", "extractor": extractor, "windows_s": [4.0],
            "normalization": "zscore", "loss": "mse", "smoothing": "box"} | keys


def test_a_static_model_is_the_shared_settings_with_its_own_over_them():
    own = {"backbone": "vit_base_patch16_224", "task": "expr", "epochs": 3, "frames_per_video": "all",
           "augmentation": {"probability": 0.1}}
    settings = static_model_settings("vit_expr", SHARED, own)
    assert settings["backbone"] == "vit_base_patch16_224" and settings["task"] == "expr"
    assert settings["epochs"] == 3 and settings["frames_per_video"] == "all"
    assert settings["learning_rate"] == SHARED["learning_rate"] and settings["loss"] == SHARED["loss"]
    # a mapping is merged key by key: the other augmentation settings stay the shared ones
    assert settings["augmentation"] == SHARED["augmentation"] | {"probability": 0.1}
    assert settings["init_checkpoint"] == SHARED["init_checkpoint"]
    assert SHARED == DEFAULTS["static"] == config_file("config.yaml")["static"]  # the shared section is untouched
    assert set(settings) == set(SHARED) | {"backbone", "task"}


@pytest.mark.parametrize(("own", "message"), [
    ({"task": "va"}, "static_models.m: sets no backbone"),
    ({}, "sets no backbone and no task"),
    ({"backbone": "efficientnet_b1", "task": "va", "epoch": 2}, r"unknown keys \['epoch'\]"),
    ({"backbone": "efficientnet_b1", "task": "va", "augmentation": {"prob": 0.1}},
     r"static_models.m.augmentation: unknown keys \['prob'\]"),
], ids=["no-backbone", "nothing", "unknown-key", "unknown-nested-key"])
def test_a_bad_static_model_entry_is_named(own, message):
    with pytest.raises(ConfigError, match=message):
        static_model_settings("m", SHARED, own)


@pytest.mark.parametrize("name", sorted(BUILTIN_EXTRACTORS))
def test_a_static_model_may_not_take_a_built_in_extractors_name(name):
    entry = {"backbone": "efficientnet_b1", "task": "va"}
    with pytest.raises(ConfigError, match=f"'{name}'.*built-in extractor"):
        static_models(SHARED, {name: entry, "effnet_va": entry})


def test_each_model_reads_a_built_in_extractor_or_a_named_static_model():
    named = static_models(SHARED, DEFAULTS["static_models"])
    assert named["effnet_b1_va"]["backbone"] == "efficientnet_b1" and named["effnet_b1_va"]["task"] == "va"
    assert named["vit_expr"]["backbone"] == "vit_base_patch16_224" and named["vit_expr"]["task"] == "expr"
    check_model_extractors(DEFAULTS["models"], named)
    check_model_extractors({"head": face_model("vit_expr", inputs="head"),
                            "both": face_model("effnet_b1_va", inputs="both")}, named)
    cases = [
        ({"m": face_model("vit_b")}, r"models.m.extractor: 'vit_b' is neither a built-in extractor"),
        ({"m": face_model("static")}, "the single `static` extractor became named static models"),
        ({"m": face_model("vit_expr", modality="audio")}, "extractor 'vit_expr' writes face embeddings, but the "
                                                          "model's modality is audio"),
        ({"m": face_model("logmel")}, "extractor 'logmel' writes audio embeddings"),
        ({"m": face_model("landmarks", inputs="head")}, r"models.m.inputs: 'head' .* 'landmarks' has no head"),
    ]
    for models, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_model_extractors(models, named)


def test_inputs_default_to_the_embedding():
    assert model_inputs(face_model("vit_expr")) == "embedding"
    assert model_inputs(face_model("vit_expr", inputs="head")) == "head"


def test_the_config_files_validate_and_the_affwild2_face_models_read_the_papers_static_models():
    validate(copy.deepcopy(DEFAULTS), SCHEMA)
    affwild2 = merged(DEFAULTS, config_file("affwild2.yaml"))
    validate(copy.deepcopy(affwild2), SCHEMA)
    named = static_models(affwild2["static"], affwild2["static_models"])
    check_model_extractors(affwild2["models"], named)
    read = {spec["extractor"] for spec in affwild2["models"].values()}
    assert {"effnet_b1_va", "vit_expr"} <= read
    # the demo's default models read no static model, so the demo trains none
    assert not {spec["extractor"] for spec in DEFAULTS["models"].values()} & set(named)


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["static"].update(backbone="efficientnet_b1"), "backbone"),
    (lambda c: c["static_models"]["vit_expr"].update(backbone="resnet50"), "resnet50"),
    (lambda c: c["static_models"]["vit_expr"].update(epoch=2), "epoch"),
    (lambda c: c["static_models"]["vit_expr"].pop("task"), "'task' is a required property"),
    (lambda c: c["static_models"]["vit_expr"].update(augmentation={"probability": 2.0}), "2.0"),
    (lambda c: c["static_models"].update({"vit-expr": {"backbone": "efficientnet_b1", "task": "va"}}), "vit-expr"),
    (lambda c: c["models"]["visual"].update(inputs="logits"), "logits"),
], ids=["shared-backbone", "bad-backbone", "unknown-key", "no-task", "bad-override", "bad-name", "bad-inputs"])
def test_the_schema_refuses_bad_static_entries(change, message):
    config = copy.deepcopy(DEFAULTS)
    change(config)
    with pytest.raises(WorkflowError, match=message):
        validate(config, SCHEMA)


# `inputs`: what a model reads of a static model's embedding files.

N_FRAMES, FPS = 200, 25.0
STRETCH = 50  # frames of one class: 2 s, the KELM window below
EMBEDDING_DIM = 4


def static_embeddings(path, labels: np.ndarray, rng: np.random.Generator, missing: int):
    """A static model's embedding file for frames labelled `labels` (EXPR): noise as the embedding, the head's
    probabilities peaked at each frame's label, no face on frame `missing`."""
    frames = sample_frames(N_FRAMES, FPS, 5)
    present = frames != missing
    probabilities = np.full((len(frames), len(EXPR_CLASSES)), 0.02, np.float32)
    probabilities[np.arange(len(frames)), labels[frames - 1]] = 0.86
    probabilities[~present] = np.nan
    columns = {"frame": frames, "time_s": (frames - 1) / FPS}
    columns |= {f"{HEAD_COLUMN_PREFIX}{c}": probabilities[:, i] for i, c in enumerate(EXPR_CLASSES)}
    write_embeddings(columns, rng.normal(size=(len(frames), EMBEDDING_DIM)), present, path)
    return path


def labelled_corpus(tmp_path, split: str, samples: list[str]) -> dict:
    """EXPR annotations of `samples` (2 s stretches of one class, every class in turn) and their static embedding
    files (`static_embeddings`)."""
    rng = np.random.default_rng(len(split))
    files = {}
    for k, sample in enumerate(samples):
        labels = np.repeat((np.arange(N_FRAMES // STRETCH) + 4 * k) % len(EXPR_CLASSES), STRETCH)
        path = annotation_path(tmp_path, "expr", split, sample)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([HEADERS["expr"], *map(str, labels)]) + "\n")
        files[sample] = static_embeddings(tmp_path / f"{sample}.parquet", labels, rng, missing=11)
    return files


def labelled(tmp_path, split: str, files: dict, inputs: str):
    probes = dict.fromkeys(files, {"n_frames": N_FRAMES, "fps": FPS})
    return labelled_sequences(list(files), "expr", split, tmp_path, "face", files, {}, probes, print, 1.0, inputs)


@pytest.mark.parametrize(("inputs", "width"), [("embedding", EMBEDDING_DIM), ("head", len(EXPR_CLASSES)),
                                                ("both", EMBEDDING_DIM + len(EXPR_CLASSES))])
def test_inputs_select_the_columns_a_model_reads(tmp_path, inputs, width):
    files = labelled_corpus(tmp_path, "train", ["v1", "v2"])
    [sequence, _] = labelled(tmp_path, "train", files, inputs)
    assert sequence.features.shape == (len(sequence.frames), width)
    assert sequence.present.tolist() == [f != 11 for f in sequence.frames]
    table = pd.read_parquet(files["v1"])
    head = np.stack([table[f"{HEAD_COLUMN_PREFIX}{c}"] for c in EXPR_CLASSES], axis=1)
    embedding = np.stack([e if e is not None else np.full(EMBEDDING_DIM, np.nan) for e in table["embedding"]])
    expected = {"embedding": embedding, "head": head, "both": np.concatenate([embedding, head], axis=1)}[inputs]
    assert np.array_equal(sequence.features, expected.astype(np.float32), equal_nan=True)


def test_a_model_with_inputs_head_trains_and_predicts_on_the_head_outputs_only(tmp_path):
    train_files = labelled_corpus(tmp_path, "train", ["t1", "t2", "t3", "t4"])
    validation_files = labelled_corpus(tmp_path, "validation", ["v1", "v2"])
    settings = KelmSettings(window_s=STRETCH / FPS, kernel="linear", Cs=(1.0, 100.0), weighted=True, folds=2)
    trained = {inputs: train_kelm("expr", labelled(tmp_path, "train", train_files, inputs),
                                  labelled(tmp_path, "validation", validation_files, inputs), settings,
                                  lambda _: None, what=inputs)
               for inputs in ("head", "embedding")}
    # the normaliser's statistics are of the 8 head columns, not of the embedding
    assert trained["head"]["normalizer"]["offset"].shape == (len(EXPR_CLASSES),)
    assert trained["embedding"]["normalizer"]["offset"].shape == (EMBEDDING_DIM,)
    # the head outputs carry the labels, the noise embedding does not
    assert trained["head"]["scores"]["macro_f1"] > 0.9 > trained["embedding"]["scores"]["macro_f1"]
    sequences = video_sequences(validation_files["v1"], "v1", "face", inputs="head")
    table = predict_kelm(trained["head"], sequences, list(EXPR_CLASSES), what="head")
    assert len(table) == N_FRAMES // STRETCH and np.isfinite(table[list(EXPR_CLASSES)].to_numpy()).all()


def test_reading_head_outputs_of_a_file_without_them_is_an_error_naming_it(tmp_path):
    frames = sample_frames(N_FRAMES, FPS, 5)
    path = tmp_path / "landmarks.parquet"
    write_embeddings({"frame": frames, "time_s": (frames - 1) / FPS}, np.ones((len(frames), 3)),
                     np.ones(len(frames), bool), path)
    assert video_sequences(path, "v1", "face")[0].features.shape == (len(frames), 3)
    with pytest.raises(ValueError, match=f"{path}: no head_\\* columns, but inputs: both"):
        video_sequences(path, "v1", "face", inputs="both")
