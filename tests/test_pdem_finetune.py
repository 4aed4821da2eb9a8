"""End-to-end audio models: PDEM's top layers and a family's head trained jointly on raw windows. The real
weights cannot be had here: the backbone is the release's config (../shared/weights/pdem-config) shrunk to 3
layers of width 64 with RANDOM weights, and the labels are synthetic, so these tests check which weights
train, the saved checkpoint, the windows' labels, the augmentation and the loss, never whether training helps."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import small_pdem_config

from avaffect.audio.pdem import PdemError, build_pdem, top_layers
from avaffect.core.checkpoints import read_checkpoint, write_checkpoint
from avaffect.corpus.tasks import EXPR_INVALID
from avaffect.models.pdem_finetune import (
    AudioWindows,
    EndToEndSettings,
    batch_loss,
    checkpoint_of,
    end_to_end_model,
    head_config,
    labelled_windows,
    load_end_to_end,
    predict_windows,
    recording_windows,
    train_end_to_end,
    training_audio,
)
from avaffect.models.training import audio_architecture

RATE = 16000
FPS = 25.0
RATE_HZ = 5.0
WINDOW_S, STEP_S, EXPR_LABEL_S = 2.0, 1.0, 1.0  # the config's 4 s windows cost twice the CI time
LAYERS, TRAINED = 3, 2
AUGMENTATION = {"polarity_p": 0.5, "noise_p": 0.5, "noise_snr_db": [15, 40], "gain_p": 0.5, "gain_db": [-6, 6]}
AUDIO_MODEL = {"units": 16, "gru_layers": 2, "heads": [4, 2], "dense": 16, "dropout": 0.1}
FAMILIES = ("audio_gru", "audio_transformer", "linear")


def settings(augment: bool, label_smoothing: float = 0.1, checkpointing: bool = False) -> EndToEndSettings:
    section = {"epochs": 2, "batch_size": 2, "backbone_learning_rate": 1e-3, "head_learning_rate": 1e-3,
               "weight_decay": 0.01, "patience": 2, "dropout": 0.1, "augment": augment,
               "gradient_checkpointing": checkpointing, "seed": 0}
    return EndToEndSettings.from_config(TRAINED, section, "ccc", label_smoothing, AUGMENTATION)


def architecture(family: str, task: str) -> dict:
    return {"dropout": 0.1} if family == "linear" else audio_architecture(AUDIO_MODEL, task, EXPR_LABEL_S, RATE_HZ)


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


def windows_in(seconds: float, seed: int, voiced: list[tuple[float, float]], n_frames: int) -> AudioWindows:
    return recording_windows(recording(seconds, seed), RATE, voiced, n_frames, FPS, RATE_HZ, WINDOW_S, STEP_S)


def windows_of(task: str, seed: int) -> AudioWindows:
    """A 5 s recording voiced over 0.5-4.5 s (three 2 s windows) and a 4 s one whose only window (0-2 s)
    has no valid label."""
    long = labelled_windows(task, windows_in(5.0, seed, [(0.5, 4.5)], 125), frame_labels(task, 125, seed), FPS,
                            EXPR_LABEL_S)
    unlabelled = labelled_windows(task, windows_in(4.0, seed + 1, [(0.2, 1.5)], 100),
                                  frame_labels(task, 100, seed + 1, invalid_before_s=3.0), FPS, EXPR_LABEL_S)
    return long + unlabelled


@pytest.fixture(scope="module")
def config_dir(shared, tmp_path_factory):
    return small_pdem_config(shared, tmp_path_factory.mktemp("pdem"), layers=LAYERS)


def model_of(config_dir, family: str, task: str):
    torch.manual_seed(0)  # the backbone's random weights stand in for the release's
    backbone, extractor = build_pdem(config_dir)
    config = head_config(family, task, backbone.config.hidden_size, architecture(family, task))
    return end_to_end_model(backbone, config, TRAINED, RATE_HZ, RATE, seed=0), extractor


def test_windows_carry_the_audio_models_step_labels_and_unlabelled_ones_are_left_out():
    va, expr = windows_of("va", 0), windows_of("expr", 0)
    assert len(va) == len(expr) == 3
    assert all(len(a) == WINDOW_S * RATE for a in va.audio)
    assert va.labels[0].shape == (10, 2) and expr.labels[0].shape == (10,)
    # window 0.5-2.5 s: step k is at 0.5 + 0.2 k s, frame round(25 t) + 1; EXPR: one class per second
    np.testing.assert_allclose(va.times[0], 0.5 + np.arange(10) / 5)
    np.testing.assert_array_equal(va.frames[0], np.round(va.times[0] * 25).astype(int) + 1)
    np.testing.assert_array_equal(va.labels[0], frame_labels("va", 125, 0)[va.frames[0] - 1])
    assert (expr.labels[0].reshape(2, 5) == expr.labels[0][::5, None]).all()


def test_windows_stop_at_the_end_of_the_audio():
    # 4 s of audio, 5 s of video voiced to its end: every window is a full window of audio, none runs past it
    windows = windows_in(4.0, 0, [(0.5, 5.0)], 125)
    assert len(windows) == 3  # 0.5-2.5, 1.5-3.5 and the last ending at the audio's end, 2-4 s
    assert all(len(a) == WINDOW_S * RATE and len(t) == WINDOW_S * RATE_HZ
               for a, t in zip(windows.audio, windows.times, strict=True))


@pytest.mark.parametrize(("family", "task", "checkpointing"), [
    ("audio_gru", "va", False), ("audio_transformer", "expr", False), ("linear", "va", False),
    ("audio_transformer", "va", True)])
def test_only_the_top_layers_and_the_head_train(config_dir, family, task, checkpointing):
    model, extractor = model_of(config_dir, family, task)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = train_end_to_end(model, extractor, task, windows_of(task, 0), windows_of(task, 10),
                              settings(augment=task == "expr", checkpointing=checkpointing), "cpu",
                              lambda message: None)
    assert [h["epoch"] for h in result["history"]] == [1, 2] and result["epoch"] in (1, 2)
    trained = ("head.", *(f"backbone.encoder.layers.{i}." for i in range(LAYERS - TRAINED, LAYERS)))
    for name, parameter in model.named_parameters():
        if name.startswith(trained):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
            assert not torch.equal(parameter.detach(), before[name]), name
        else:
            assert parameter.grad is None and not parameter.requires_grad, name
            assert torch.equal(parameter.detach(), before[name]), name
    assert not any(module.training for module in model.modules())


def test_training_mode_leaves_the_frozen_backbone_in_eval_mode(config_dir):
    model, _ = model_of(config_dir, "audio_gru", "va")
    model.train()
    top = {id(m) for m in model.top.modules()} | {id(m) for m in model.head.modules()}
    for module in model.modules():
        assert module.training == (id(module) in top)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_saved_checkpoint_predicts_the_same_in_a_fresh_model(config_dir, family, tmp_path):
    model, extractor = model_of(config_dir, family, "expr")
    train_end_to_end(model, extractor, "expr", windows_of("expr", 0), windows_of("expr", 10), settings(augment=False),
                     "cpu", lambda message: None)
    write_checkpoint(checkpoint_of(model, "expr", WINDOW_S, STEP_S), tmp_path / "checkpoint.pt")
    checkpoint = read_checkpoint(tmp_path / "checkpoint.pt")  # weights_only
    assert set(checkpoint["top_layers"]) == set(model.top.state_dict())
    torch.manual_seed(0)  # the same random backbone: the release's weights in a real run
    release, _ = build_pdem(config_dir)
    fresh = load_end_to_end(checkpoint, release)
    windows = windows_in(5.0, 3, [(0.5, 4.5)], 125)
    expected = predict_windows(model, extractor, "expr", windows, 2, "cpu")
    reloaded = predict_windows(fresh, extractor, "expr", windows, 2, "cpu")
    for a, b in zip(expected, reloaded, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert a.shape == (10, 8)
    untrained, _ = model_of(config_dir, family, "expr")
    assert np.abs(predict_windows(untrained, extractor, "expr", windows, 2, "cpu")[0] - expected[0]).max() > 1e-4


def test_augmentation_is_drawn_anew_for_every_epoch_and_window_and_reproducibly():
    # noise every time, so that no two draws can leave the window as it is
    augmentation = replace(settings(augment=True).augmentation, noise_p=1.0)
    audio = recording(2.0, 0)
    draws = {(epoch, window): training_audio(audio, augmentation, 0, epoch, window)
             for epoch in range(1, 4) for window in range(3)}
    assert all(not np.array_equal(draws[a], draws[b]) for a in draws for b in draws if a < b)
    np.testing.assert_array_equal(draws[2, 1], training_audio(audio, augmentation, 0, 2, 1))
    assert training_audio(audio, settings(augment=False).augmentation, 0, 1, 0) is audio


def test_expr_loss_is_label_smoothed_and_va_loss_is_not():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 8, (2, 10))
    labels[0, :3] = EXPR_INVALID
    raw = torch.from_numpy(rng.normal(size=(2, 10, 8)).astype(np.float32))
    valid = torch.from_numpy(labels != EXPR_INVALID)
    smoothed = batch_loss("expr", settings(False, label_smoothing=0.2), raw, labels, None)
    expected = torch.nn.functional.cross_entropy(raw[valid], torch.from_numpy(labels)[valid], label_smoothing=0.2)
    torch.testing.assert_close(smoothed, expected)
    assert not torch.isclose(smoothed, batch_loss("expr", settings(False, label_smoothing=0.0), raw, labels, None))
    va = rng.uniform(-1, 1, (2, 10, 2))
    va_raw = torch.from_numpy(rng.normal(size=(2, 10, 2)).astype(np.float32))
    torch.testing.assert_close(batch_loss("va", settings(False, 0.2), va_raw, va, None),
                               batch_loss("va", settings(False, 0.0), va_raw, va, None))


def test_more_layers_than_the_backbone_has_is_a_config_error(config_dir):
    model, _ = build_pdem(config_dir)
    assert len(top_layers(model, LAYERS)) == LAYERS
    with pytest.raises(PdemError, match=rf"finetune_layers is {LAYERS + 1}, .*config.json has {LAYERS} transformer"):
        top_layers(model, LAYERS + 1)
