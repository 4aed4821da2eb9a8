"""Fine-tuning the last PDEM layers. The real weights cannot be had here: the backbone is the release's config
(../shared/weights/pdem-config) shrunk to 3 layers of width 64 with RANDOM weights, and the labels are
synthetic, so these tests check which weights train, the saved file and the windows' labels, never whether
fine-tuning helps."""

import numpy as np
import pytest
import torch
from conftest import small_pdem_config

from avaffect.audio.pdem import (
    PdemError,
    build_pdem,
    load_pdem_weights,
    pdem_window_embeddings,
    save_pdem_weights,
    top_layers,
)
from avaffect.corpus.tasks import EXPR_INVALID
from avaffect.models.pdem_finetune import (
    FinetuneSettings,
    LabelledWindows,
    finetune_pdem,
    initial_head,
    labelled_windows,
)

RATE = 16000
FPS = 25.0
RATE_HZ = 5.0
WINDOW_S, STEP_S, EXPR_LABEL_S = 2.0, 1.0, 1.0  # the config's 4 s windows cost twice the CI time
LAYERS, TRAINED = 3, 2
AUGMENTATION = {"polarity_p": 0.5, "noise_p": 0.5, "noise_snr_db": [15, 40], "gain_p": 0.5, "gain_db": [-6, 6]}


def settings(augment: bool) -> FinetuneSettings:
    section = {"epochs": 2, "batch_size": 2, "backbone_learning_rate": 1e-3, "head_learning_rate": 1e-3,
               "weight_decay": 0.01, "patience": 2, "dropout": 0.1, "loss": "ccc", "label_smoothing": 0.1,
               "augment": augment, "seed": 0}
    return FinetuneSettings.from_config(TRAINED, section, AUGMENTATION)


def recording(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * (120 + 40 * seed) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.02 * rng.normal(size=len(t))).astype(np.float32)


def frame_labels(task: str, n_frames: int, seed: int, invalid_before_s: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    invalid = np.arange(n_frames) / FPS < invalid_before_s
    if task == "va":
        labels = np.repeat(rng.uniform(-1, 1, (n_frames // 25 + 1, 2)), 25, axis=0)[:n_frames]
        labels[invalid] = np.nan
        return labels
    labels = np.repeat(rng.integers(0, 8, n_frames // 25 + 1), 25)[:n_frames]
    labels[invalid] = EXPR_INVALID
    return labels


def windows_of(task: str, seed: int) -> LabelledWindows:
    """A 5 s recording voiced over 0.5-4.5 s (three 2 s windows) and a 4 s one whose only window (0-2 s)
    has no valid label."""
    long = labelled_windows(task, recording(5.0, seed), RATE, [(0.5, 4.5)], frame_labels(task, 125, seed), FPS,
                            RATE_HZ, WINDOW_S, STEP_S, EXPR_LABEL_S)
    unlabelled = labelled_windows(task, recording(4.0, seed + 1), RATE, [(0.2, 1.5)],
                                  frame_labels(task, 100, seed + 1, invalid_before_s=3.0), FPS, RATE_HZ, WINDOW_S,
                                  STEP_S, EXPR_LABEL_S)
    return long + unlabelled


@pytest.fixture(scope="module")
def config_dir(shared, tmp_path_factory):
    return small_pdem_config(shared, tmp_path_factory.mktemp("pdem"), layers=LAYERS)


def test_windows_carry_the_audio_models_step_labels_and_unlabelled_ones_are_left_out():
    va, expr = windows_of("va", 0), windows_of("expr", 0)
    assert len(va) == len(expr) == 3
    assert all(len(a) == WINDOW_S * RATE for a in va.audio)
    assert va.labels[0].shape == (10, 2) and expr.labels[0].shape == (10,)
    # window 0.5-2.5 s: step k is at 0.5 + 0.2 k s, frame round(25 t) + 1; EXPR: one class per second
    np.testing.assert_array_equal(va.labels[0], frame_labels("va", 125, 0)[np.round((0.5 + np.arange(10) / 5) * 25)
                                                                           .astype(int)])
    assert (expr.labels[0].reshape(2, 5) == expr.labels[0][::5, None]).all()


def test_windows_stop_at_the_end_of_the_audio():
    # 4 s of audio, 5 s of video voiced to its end: every window is a full window of audio, none runs past it
    windows = labelled_windows("va", recording(4.0, 0), RATE, [(0.5, 5.0)], frame_labels("va", 125, 0), FPS,
                               RATE_HZ, WINDOW_S, STEP_S, EXPR_LABEL_S)
    assert len(windows) == 3  # 0.5-2.5, 1.5-3.5 and the last ending at the audio's end, 2-4 s
    assert all(len(a) == WINDOW_S * RATE and len(labels) == WINDOW_S * RATE_HZ
               for a, labels in zip(windows.audio, windows.labels, strict=True))


@pytest.mark.parametrize("task", ["va", "expr"])
def test_only_the_last_layers_and_the_head_train(config_dir, task):
    torch.manual_seed(0)
    model, extractor = build_pdem(config_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head_before = initial_head(model, task, settings(augment=task == "expr")).state_dict()
    result = finetune_pdem(model, extractor, task, windows_of(task, 0), windows_of(task, 10),
                           settings(augment=task == "expr"), RATE_HZ, "cpu", lambda message: None)
    head = result["head"]
    assert [h["epoch"] for h in result["history"]] == [1, 2] and result["epoch"] in (1, 2)
    trained = {f"encoder.layers.{i}." for i in range(LAYERS - TRAINED, LAYERS)}
    for name, parameter in model.named_parameters():
        if any(name.startswith(prefix) for prefix in trained):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
            assert not torch.equal(parameter.detach(), before[name]), name
        else:
            assert parameter.grad is None and not parameter.requires_grad, name
            assert torch.equal(parameter.detach(), before[name]), name
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None and not torch.equal(parameter.detach(), head_before[name]), name
    assert not model.training and not head.training


def test_saved_weights_load_into_a_fresh_backbone_and_change_its_embeddings(config_dir, tmp_path):
    torch.manual_seed(0)
    model, extractor = build_pdem(config_dir)
    save_pdem_weights(model, tmp_path / "release.safetensors")
    finetune_pdem(model, extractor, "va", windows_of("va", 0), windows_of("va", 10), settings(augment=False), RATE_HZ,
                  "cpu", lambda message: None)
    save_pdem_weights(model, tmp_path / "finetuned.safetensors", {"finetune_layers": str(TRAINED)})
    audio, windows = recording(5.0, 3), [(0.5, 2.5), (2.0, 4.0)]
    embeddings = {}
    for name in ("release", "finetuned"):
        torch.manual_seed(1)  # a fresh backbone unlike either
        fresh, _ = build_pdem(config_dir)
        load_pdem_weights(fresh, tmp_path / f"{name}.safetensors")
        embeddings[name] = pdem_window_embeddings(fresh, extractor, audio, RATE, windows, RATE_HZ, 2, "cpu")
    np.testing.assert_allclose(embeddings["finetuned"],
                               pdem_window_embeddings(model, extractor, audio, RATE, windows, RATE_HZ, 2, "cpu"),
                               atol=1e-5)
    assert np.abs(embeddings["finetuned"] - embeddings["release"]).mean() > 1e-3
    assert not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "plain").touch()
    modes = {name: (tmp_path / name).stat().st_mode & 0o777 for name in ("finetuned.safetensors", "plain")}
    assert modes["finetuned.safetensors"] == modes["plain"]  # the umask's, not owner-only


def test_more_layers_than_the_backbone_has_is_a_config_error(config_dir):
    model, _ = build_pdem(config_dir)
    assert len(top_layers(model, LAYERS)) == LAYERS
    with pytest.raises(PdemError, match=rf"finetune_layers is {LAYERS + 1}, .*config.json has {LAYERS} transformer"):
        top_layers(model, LAYERS + 1)
