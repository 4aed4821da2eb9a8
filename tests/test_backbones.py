"""Static FER backbones with the SUN head. ImageNet weights are not reachable here, so every model in these
tests is built with random initial weights (static.imagenet_init: false); what is tested is the
architecture, preprocessing, fine-tuning, checkpoints and the embedding tables, not accuracy."""

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import REPO
from torch import nn

from avaffect.core.checkpoints import CheckpointError
from avaffect.core.resources import load_manifest, sha256_of
from avaffect.core.tables import write_embeddings
from avaffect.corpus.tasks import EXPR_CLASSES
from avaffect.face.augment import OPERATIONS, CropAugmentation
from avaffect.face.backbones import (
    BACKBONES,
    HEAD_OUTPUTS,
    IMAGENET_RESOURCES,
    Preprocessing,
    StaticConfig,
    StaticFER,
    crop_embedder,
    embed_frames,
    embedding_rows,
    face_crop,
    load_pretrained,
    load_static,
    read_state_dict,
)
from avaffect.face.boxes import FaceBox
from avaffect.media.timeline import sample_frames
from avaffect.models.static_training import StaticTrainSettings, fine_tune, labelled_crops, labelled_frames

EMBEDDING_DIM = 256
NO_AUGMENTATION = CropAugmentation(probability=0.0, operations=OPERATIONS, padding_px=8, brightness=0.2,
                                   contrast=0.2, saturation=0.2, hue=0.05, noise_std=0.02, rotation_deg=10.0,
                                   crop_fraction=0.9, posterize_bits=4, sharpness=2.0)
NO_POINTS = np.full((5, 2), np.nan, np.float32)


def small_model(task: str, backbone: str = "efficientnet_b1") -> StaticFER:
    torch.manual_seed(0)
    return StaticFER(StaticConfig(backbone, task, EMBEDDING_DIM, dropout=0.2))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_head_is_dropout_dense_batchnorm_tanh_then_task_outputs(backbone):
    model = small_model("expr", backbone).eval()
    layers = list(model.embedding)
    assert [type(layer) for layer in layers] == [nn.Dropout, nn.Linear, nn.BatchNorm1d, nn.Tanh]
    assert layers[1].in_features == model.backbone.num_features and layers[1].out_features == EMBEDDING_DIM
    # EfficientNets take any input size; 64 px keeps the test fast. ViT-B/16 needs its 224.
    size = Preprocessing.of(model).size if backbone.startswith("vit") else 64
    with torch.inference_mode():
        embedding, raw = model(torch.randn(2, 3, size, size))
    assert embedding.shape == (2, EMBEDDING_DIM) and raw.shape == (2, len(EXPR_CLASSES))
    assert embedding.abs().max() <= 1


def test_every_backbone_has_its_imagenet_weights_in_the_manifest():
    manifest = load_manifest(REPO / "resources" / "manifest.yaml")
    for backbone, key in IMAGENET_RESOURCES.items():
        assert backbone in manifest[key].file and manifest[key].url.startswith("https://huggingface.co/timm/")


def test_unknown_backbone_or_task_is_a_clear_error():
    with pytest.raises(ValueError, match="resnet50"):
        StaticConfig("resnet50", "expr", EMBEDDING_DIM, 0.2)
    with pytest.raises(ValueError, match="au"):
        StaticConfig("efficientnet_b1", "au", EMBEDDING_DIM, 0.2)


def test_crop_has_the_margin_is_clipped_and_resized():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:60, 150:190] = 255  # the face box below, margin 15 px: x 135..200 (clipped), y 5..75
    box = FaceBox(150, 20, 190, 60, 0.9, NO_POINTS)
    crop = face_crop(image, box, 15, 32)
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    # 40 of 65 columns and 40 of 70 rows are face: the bright part is about 62 % wide, 57 % high.
    bright = crop[..., 0] > 127
    assert bright.any(axis=0).mean() == pytest.approx(40 / 65, abs=0.05)
    assert bright.any(axis=1).mean() == pytest.approx(40 / 70, abs=0.05)


def test_labelled_frames_need_a_label_and_a_face():
    labels = np.array([0, -1, 3, 3, 5, 1], np.int64)
    has_face = {1: True, 2: True, 3: False, 4: True, 5: True, 6: True}
    assert labelled_frames(labels, "expr", has_face, limit=10).tolist() == [1, 4, 5, 6]
    assert labelled_frames(labels, "expr", has_face, limit=2).tolist() == [1, 6]
    va = np.array([[0.1, 0.2], [np.nan, np.nan], [0.3, 0.3]])
    assert labelled_frames(va, "va", {1: True, 2: True, 3: True}, limit=5).tolist() == [1, 3]
    many = np.zeros(500, np.int64)
    assert labelled_frames(many, "expr", dict.fromkeys(range(1, 501), True), limit="all").tolist() == list(
        range(1, 501))


def coloured_frames(n: int, size: int = 64) -> list[tuple[int, np.ndarray]]:
    """Frames whose "face" brightness encodes a class: a learnable toy problem made by this test."""
    rng = np.random.default_rng(0)
    frames = []
    for number in range(1, n + 1):
        image = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
        image[16:48, 16:48] = 30 * (number % 2) + 100
        frames.append((number, image))
    return frames


def test_fine_tune_keeps_a_finite_epoch_over_a_nan_first_one(monkeypatch):
    # a constant prediction's CCC is 0/0: the first epoch scores NaN, the second a number, the third NaN again
    epoch_scores = iter([float("nan"), 0.1, float("nan")])
    monkeypatch.setattr("avaffect.models.static_training.static_scores",
                        lambda task, labels, outputs: {"p_va": next(epoch_scores)})
    model = small_model("va")
    prep = replace(Preprocessing.of(model), size=64)
    frames = coloured_frames(6)
    boxes = {number: FaceBox(16, 16, 48, 48, 0.9, NO_POINTS) for number, _ in frames}
    labels = np.array([[n % 2 - 0.5, 0.2] for n in range(1, 7)])
    crops, crop_labels = labelled_crops(frames, boxes, labels, 15, prep.size)
    settings = StaticTrainSettings(epochs=3, batch_size=6, learning_rate=1e-3, weight_decay=0.0, seed=0,
                                   loss="mse", augmentation=NO_AUGMENTATION)
    checkpoint = fine_tune(model, prep, crops, crop_labels, crops, crop_labels, settings, "cpu", lambda _: None)
    assert checkpoint["epoch"] == 2 and checkpoint["scores"] == {"p_va": 0.1}


@pytest.mark.parametrize("task", ["expr", "va"])
def test_fine_tune_checkpoint_round_trip_and_embedding_table(tmp_path, task):
    model = small_model(task)
    # Crops of 64 px instead of the backbone's 240 keep the test fast; the code path is the same.
    prep = replace(Preprocessing.of(model), size=64)
    frames = coloured_frames(12)
    boxes = {number: FaceBox(16, 16, 48, 48, 0.9, NO_POINTS) for number, _ in frames if number != 5}
    labels = (np.array([n % 2 for n in range(1, 13)], np.int64) if task == "expr"
              else np.array([[n % 2 - 0.5, 0.2] for n in range(1, 13)]))
    crops, crop_labels = labelled_crops(frames, boxes, labels, 15, prep.size)
    assert crops.shape == (11, prep.size, prep.size, 3) and len(crop_labels) == 11
    settings = StaticTrainSettings(epochs=1, batch_size=4, learning_rate=1e-3, weight_decay=0.0, seed=0,
                                   loss="mse", augmentation=NO_AUGMENTATION)
    checkpoint = fine_tune(model, prep, crops, crop_labels, crops, crop_labels, settings, "cpu", lambda _: None)
    assert checkpoint["epoch"] == 1 and len(checkpoint["history"]) == 1
    assert set(checkpoint["scores"]) >= ({"macro_f1"} if task == "expr" else {"p_va"})
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    loaded, loaded_prep = load_static(torch.load(tmp_path / "checkpoint.pt", weights_only=True), "cpu")
    assert loaded_prep == prep

    n_frames, fps, rate = 12, 10.0, 5.0
    sampled = sample_frames(n_frames, fps, rate)
    numbered = ((n, face_crop(image, boxes[n], 15, prep.size)) for n, image in frames if n in boxes and n in sampled)
    embed = crop_embedder(loaded, prep, "cpu", "auto")  # the workflow's default: onnxruntime on the CPU
    found = embed_frames(embed, numbered, batch_size=2)
    names = HEAD_OUTPUTS[task]
    matrix, outputs, present = embedding_rows(sampled, found, EMBEDDING_DIM, len(names))
    assert present.tolist() == [n != 5 for n in sampled]
    if task == "expr":
        assert np.allclose(outputs[present].sum(axis=1), 1, atol=1e-5)
    assert np.all(np.abs(outputs[present]) <= 1) and np.isnan(outputs[~present]).all()
    path = tmp_path / "emb.parquet"
    columns = {"frame": sampled, "time_s": (sampled - 1) / fps} | {f"head_{c}": outputs[:, i]
                                                                  for i, c in enumerate(names)}
    write_embeddings(columns, matrix, present, path)
    table = pq.read_table(path)
    assert table.num_rows == len(sampled) == 6
    assert table.column_names == ["frame", "time_s", *(f"head_{c}" for c in names), "embedding"]
    embedding_type = table.schema.field("embedding").type
    assert pa.types.is_fixed_size_list(embedding_type) and embedding_type.list_size == EMBEDDING_DIM
    assert embedding_type.value_type == pa.float32() and table.schema.field("frame").type == pa.int64()
    embeddings = table.column("embedding").to_pylist()
    assert [e is not None for e in embeddings] == present.tolist()
    # The same crops give the same embedding in a batch of 2 and alone (eval mode, batch norm frozen).
    alone = embed_frames(embed, [(1, face_crop(frames[0][1], boxes[1], 15, prep.size))], 1)
    assert np.allclose(alone[1][0], found[1][0], atol=1e-4)


def toy_va(n: int = 6):
    model = small_model("va")
    prep = replace(Preprocessing.of(model), size=64)
    frames = coloured_frames(n)
    boxes = {number: FaceBox(16, 16, 48, 48, 0.9, NO_POINTS) for number, _ in frames}
    labels = np.array([[k % 2 - 0.5, 0.2] for k in range(1, n + 1)])
    return model, prep, *labelled_crops(frames, boxes, labels, 15, prep.size)


@pytest.mark.parametrize("loss", ["mse", "ccc"])
def test_fine_tune_uses_the_configured_va_loss_and_augments_training_batches_only(monkeypatch, loss):
    import avaffect.models.static_training as static_training

    seen_losses, augmented = [], []
    real_loss, real_augment = static_training.masked_loss, static_training.augment_crops
    monkeypatch.setattr(static_training, "masked_loss",
                        lambda task, name, *args: seen_losses.append(name) or real_loss(task, name, *args))
    monkeypatch.setattr(static_training, "augment_crops",
                        lambda images, *args: augmented.append(len(images)) or real_augment(images, *args))
    model, prep, crops, labels = toy_va()
    settings = StaticTrainSettings(epochs=2, batch_size=3, learning_rate=1e-3, weight_decay=0.0, seed=0, loss=loss,
                                   augmentation=replace(NO_AUGMENTATION, probability=0.5))
    fine_tune(model, prep, crops, labels, crops, labels, settings, "cpu", lambda _: None)
    assert seen_losses == [loss] * 4
    assert augmented == [3] * 4  # two batches of three per epoch; validation is never augmented


def saved_state(model: StaticFER, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path, sha256_of(path)


def test_pretrained_checkpoint_loads_into_a_fresh_model(tmp_path):
    source = small_model("va").eval()
    path, digest = saved_state(source, tmp_path / "fer.safetensors")
    torch.manual_seed(1)
    target = StaticFER(StaticConfig("efficientnet_b1", "va", EMBEDDING_DIM, dropout=0.2)).eval()
    images = torch.rand(2, 3, 64, 64)
    assert not torch.allclose(target(images)[1], source(images)[1])
    load_pretrained(target, read_state_dict(path, digest), path, lambda _: None)
    assert torch.equal(target(images)[0], source(images)[0]) and torch.equal(target(images)[1], source(images)[1])


def test_pretrained_checkpoint_with_another_head_keeps_the_backbone(tmp_path):
    source = small_model("expr").eval()
    path, digest = saved_state(source, tmp_path / "fer.safetensors")
    torch.manual_seed(1)
    target = StaticFER(StaticConfig("efficientnet_b1", "va", EMBEDDING_DIM, dropout=0.2)).eval()
    head = target.head.weight.detach().clone()
    logged = []
    load_pretrained(target, read_state_dict(path, digest), path, logged.append)
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(target(images)[0], source(images)[0]) and torch.equal(target.head.weight, head)
    assert "re-initialised" in logged[0]
    without_one = {k: v for k, v in read_state_dict(path, digest).items() if k != "embedding.1.bias"}
    with pytest.raises(CheckpointError, match=r"missing \['embedding.1.bias'\]"):
        load_pretrained(target, without_one, path, logged.append)


def test_pretrained_checkpoint_with_a_wrong_sha256_or_pickle_is_refused(tmp_path):
    import pickle

    path, digest = saved_state(small_model("va"), tmp_path / "fer.safetensors")
    with pytest.raises(CheckpointError, match=f"fer.safetensors: sha256 is {digest}, but .* expects 0+"):
        read_state_dict(path, "0" * 64)
    pickled = tmp_path / "fer.pkl"
    pickled.write_bytes(pickle.dumps({"weights": object()}))
    with pytest.raises(CheckpointError, match="fer.pkl: not a readable torch pretrained FER checkpoint"):
        read_state_dict(pickled, sha256_of(pickled))
    with pytest.raises(CheckpointError, match="missing.pt: pretrained FER checkpoint .* not found"):
        read_state_dict(tmp_path / "missing.pt", digest)
