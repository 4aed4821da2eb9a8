import numpy as np
import pytest
import torch

from avaffect.audio.logmel import audio_window_embeddings, log_mel, logmel_statistics, mel_filterbank
from avaffect.models.families import FAMILIES, ModelConfig, build_model
from avaffect.models.normalization import Normalizer
from avaffect.models.sequences import StepSequence
from avaffect.models.training import (
    EarlyStopping,
    TrainSettings,
    batch_ccc_loss,
    class_weights,
    load_checkpoint,
    make_windows,
    predict,
    train,
)


def test_mel_filterbank_shape_and_peak_order():
    bank = mel_filterbank(16000, 400, 40, 50, 7600)
    assert bank.shape == (40, 201)
    peaks = bank.argmax(axis=1)
    assert (np.diff(peaks) >= 0).all() and bank.max() <= 1.0


def test_log_mel_places_a_tone_in_the_right_band():
    rate = 16000
    t = np.arange(rate) / rate
    low, high = (log_mel(np.sin(2 * np.pi * f * t).astype(np.float32), rate, 0.025, 0.01, 40, 50, 7600)[1]
                 for f in (200, 3000))
    assert low.mean(axis=0).argmax() < high.mean(axis=0).argmax()


def test_logmel_statistics_mean_and_std():
    times = np.arange(10) * 0.1
    logmel = np.arange(20, dtype=np.float32).reshape(10, 2)
    stats = logmel_statistics(times, logmel, np.array([0.15]), 0.1)
    assert np.allclose(stats[0], [3.0, 4.0, 1.0, 1.0])


def test_audio_window_embeddings_on_voiced_segment():
    rate = 16000
    samples = np.random.default_rng(0).normal(0, 0.1, 10 * rate).astype(np.float32)
    cols, matrix = audio_window_embeddings(samples, rate, [(1.0, 2.0)], 250, 25.0, 5.0, 4.0, 2.0, 40,
                                           0.025, 0.01, 50, 7600)
    assert matrix.shape == (20, 80) and set(cols["window"]) == {0}
    assert cols["time_s"][0] == 0.0 and cols["frame"][5] == 26
    _, empty = audio_window_embeddings(np.zeros(0, np.float32), rate, [], 250, 25.0, 5.0, 4.0, 2.0, 40,
                                       0.025, 0.01, 50, 7600)
    assert empty.shape == (0, 80)


def test_audio_window_embeddings_stop_at_the_end_of_the_audio():
    rate, step_hz = 16000, 5.0
    samples = np.random.default_rng(0).normal(0, 0.1, 9 * rate).astype(np.float32)  # 9 s of audio, 10 s of video
    cols, matrix = audio_window_embeddings(samples, rate, [(3.0, 10.0)], 250, 25.0, step_hz, 4.0, 2.0, 40,
                                           0.025, 0.01, 50, 7600)
    assert (cols["time_s"] + 0.5 / step_hz <= 9.0 + 1e-9).all()  # every step's span lies inside the audio
    assert (matrix != 0).any(axis=1).all()  # so no step is an all-zero embedding


@pytest.mark.parametrize("family", ["transformer", "tcn_transformer"])
def test_temporal_models_shapes_and_padding(family):
    model = build_model(ModelConfig(family=family, n_features=5, n_outputs=8)).eval()
    x = torch.randn(3, 20, 5)
    padding = torch.zeros(3, 20, dtype=torch.bool)
    padding[:, 15:] = True
    out = model(x, padding)
    assert out.shape == (3, 20, 8)
    # padded steps do not change the unpadded ones
    x2 = x.clone()
    x2[:, 15:] = 100.0
    assert torch.allclose(model(x2, padding)[:, :15], out[:, :15], atol=1e-5)


def synthetic(video, n, rng, task):
    features = rng.normal(size=(n, 3)).astype(np.float32)
    features[rng.random(n) < 0.1] = np.nan
    if task == "va":
        labels = np.tanh(np.nan_to_num(features[:, :2]))
    else:
        labels = (np.nan_to_num(features[:, 0]) > 0).astype(np.int64) * 4
    return StepSequence(video, np.arange(1, n + 1), np.arange(n) / 5.0, features, labels)


def test_windows_mask_missing_faces_and_invalid_labels():
    seq = synthetic("v", 30, np.random.default_rng(0), "va")
    seq.labels[3] = np.nan
    norm = Normalizer.fit([seq], "zscore")
    data = make_windows([seq], norm.transform([seq]), "va", 20, 10)
    assert data.inputs.shape == (2, 20, 4)
    assert not data.mask[0, 3] and data.mask.sum() == (seq.present & ~np.isnan(seq.labels).any(1)).sum() + \
        (seq.present[10:20] & ~np.isnan(seq.labels[10:20]).any(1)).sum()
    assert data.padding.sum() == 0


def test_class_weights_are_inverse_frequency():
    seq = StepSequence("v", np.arange(1, 5), np.zeros(4), np.zeros((4, 1), np.float32), np.array([0, 0, 0, 1]))
    weights = class_weights([seq], 3)
    assert weights[2] == 0 and weights[1] == 3 * weights[0]


@pytest.mark.parametrize(("family", "normalization", "loss"), [
    ("transformer", "zscore", "mse"), ("tcn_transformer", "minmax", "ccc"), ("linear", "zscore", "mse"),
])
def test_training_learns_a_mapping_and_is_reproducible(family, normalization, loss):
    rng = np.random.default_rng(1)
    train_set = [synthetic(f"t{i}", 60, rng, "va") for i in range(6)]
    validation = [synthetic("v", 60, rng, "va")]
    settings = TrainSettings(window=20, hop=10, epochs=25, batch_size=8, learning_rate=3e-3,
                             weight_decay=0.0, patience=25, seed=0, normalization=normalization, loss=loss)
    arch = {"d_model": 32, "n_layers": 1, "n_heads": 4, "dropout": 0.0}
    first, history = train("va", train_set, validation, family, arch, settings, "cpu", lambda _: None, what="model m")
    again, _ = train("va", train_set, validation, family, arch, settings, "cpu", lambda _: None, what="model m")
    assert first["scores"]["p_va"] > 0.6
    assert first["scores"] == again["scores"]
    assert history[-1]["loss"] < history[0]["loss"]
    model, norm = load_checkpoint(first, "cpu")
    (out,) = predict(model, norm, "va", validation, first["window"], first["hop"], "cpu", what="model m")
    assert out.shape == (60, 2)


def test_predict_averages_overlapping_windows():
    rng = np.random.default_rng(2)
    seq = synthetic("v", 45, rng, "expr")
    norm = Normalizer.fit([seq], "zscore")
    model = build_model(ModelConfig(family="transformer", n_features=4, n_outputs=8, d_model=16, n_heads=4,
                                    n_layers=1))
    (out,) = predict(model, norm, "expr", [seq], window=20, hop=10, device="cpu", what="model m")
    assert out.shape == (45, 8) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_windows_shorter_than_the_hop_train_on_and_predict_every_step():
    # the Aff-Wild2 sweep's 1 s window (5 steps) with the 2 s hop (10 steps), on a sequence with absent steps
    rng = np.random.default_rng(5)
    seq = synthetic("v", 40, rng, "expr")  # 8 windows of 5 steps, none overlapping
    assert not seq.present.all()
    norm = Normalizer.fit([seq], "zscore")
    data = make_windows([seq], norm.transform([seq]), "expr", 5, 10)
    assert data.mask.sum() == seq.present.sum()
    model = build_model(ModelConfig(family="transformer", n_features=4, n_outputs=8, d_model=16, n_heads=4,
                                    n_layers=1))
    (out,) = predict(model, norm, "expr", [seq], window=5, hop=10, device="cpu", what="model m")
    assert np.isfinite(out).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_training_with_a_hop_longer_than_the_window_logs_and_keeps_the_covering_hop():
    rng = np.random.default_rng(8)
    train_set, validation = [synthetic("t", 40, rng, "va")], [synthetic("v", 40, rng, "va")]
    settings = TrainSettings(window=5, hop=10, epochs=1, batch_size=8, learning_rate=1e-3, weight_decay=0.0,
                             patience=1, seed=0)
    arch = {"d_model": 16, "n_layers": 1, "n_heads": 4, "dropout": 0.0}
    logged = []
    best, _ = train("va", train_set, validation, "transformer", arch, settings, "cpu", logged.append,
                    what="model m, task va, window 1 s")
    assert best["hop"] == 5 and np.isfinite(best["scores"]["p_va"])
    assert "model m, task va, window 1 s: training.hop_s (10 steps) is longer than the window (5 steps); windows " \
           "come every 5 steps" in logged[0]


def test_a_nan_prediction_is_an_error_naming_the_model_task_window_and_video():
    rng = np.random.default_rng(6)
    seq = synthetic("clip 7", 30, rng, "expr")
    norm = Normalizer.fit([seq], "zscore")
    model = build_model(ModelConfig(family="transformer", n_features=4, n_outputs=8, d_model=16, n_heads=4,
                                    n_layers=1))
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))  # a model whose training diverged
    with pytest.raises(ValueError, match=r"model m, task expr, window 1 s: .*'clip 7'"):
        predict(model, norm, "expr", [seq], window=5, hop=5, device="cpu", what="model m, task expr, window 1 s")


def test_ccc_loss_is_zero_for_perfect_and_two_for_inverted_predictions():
    target = torch.linspace(-1, 1, 50).repeat(2, 1).T
    assert batch_ccc_loss(target, target).item() == pytest.approx(0.0, abs=1e-5)
    assert batch_ccc_loss(-target, target).item() == pytest.approx(2.0, abs=1e-4)


def test_normalizations():
    a = StepSequence("a", np.arange(1, 4), np.zeros(3), np.array([[0.0], [2.0], [np.nan]], np.float32))
    b = StepSequence("b", np.arange(1, 3), np.zeros(2), np.array([[10.0], [20.0]], np.float32))
    minmax = Normalizer.fit([a, b], "minmax").transform([a, b])
    assert minmax[1][:, 0].tolist() == [0.5, 1.0] and minmax[0][2].tolist() == [0.0, 0.0]
    per_video = Normalizer.fit([a], "per_video_minmax").transform([a, b])
    assert per_video[0][:2, 0].tolist() == [0.0, 1.0] and per_video[1][:, 0].tolist() == [0.0, 1.0]
    state = Normalizer.fit([a, b], "zscore").to_state()
    assert Normalizer.from_state(state).kind == "zscore"
    with pytest.raises(ValueError, match="unknown normalization"):
        Normalizer.fit([a], "l2")
    assert set(FAMILIES) == {"transformer", "tcn_transformer", "linear", "audio_gru", "audio_transformer"}


def test_window_labels_mean_and_majority_of_valid_steps():
    from avaffect.models.functionals import window_labels

    times = np.arange(8) * 0.5
    va = StepSequence("v", np.arange(1, 9), times, np.zeros((8, 1), np.float32),
                      np.array([[0.0, 0.0], [1.0, 1.0], [np.nan, np.nan], [0.5, 0.5]] + [[np.nan, np.nan]] * 4))
    out = window_labels("va", va, np.array([0.0, 2.0]), 2.0)
    assert out[0].tolist() == [0.5, 0.5] and np.isnan(out[1]).all()
    classes = np.array([3, 3, 1, -1, 2, -1, -1, 2])
    expr = StepSequence("v", np.arange(1, 9), times, np.zeros((8, 1), np.float32), classes)
    assert window_labels("expr", expr, np.array([0.0, 2.0]), 2.0).tolist() == [3, 2]


@pytest.mark.parametrize("task", ["va", "expr"])
def test_kelm_trains_on_functionals_and_predicts_window_centres(task):
    from avaffect.models.functionals import KelmSettings, predict_kelm, train_kelm

    rng = np.random.default_rng(3)
    train_set = [synthetic(f"t{i}", 80, rng, task) for i in range(5)]
    validation = [synthetic("v", 80, rng, task)]
    settings = KelmSettings(window_s=2.0, kernel="rbf", Cs=(0.1, 1.0, 10.0), weighted=task == "expr", folds=3)
    checkpoint = train_kelm(task, train_set, validation, settings, lambda _: None, what="model k")
    assert checkpoint["C"] in settings.Cs and checkpoint["family"] == "kelm"
    columns = ["valence", "arousal"] if task == "va" else [f"c{k}" for k in range(8)]
    table = predict_kelm(checkpoint, validation, columns, what="model k")
    assert table["time_s"].tolist() == pytest.approx(np.arange(8) * 2.0 + 1.0)
    assert table["frame"].tolist() == [6 + 10 * k for k in range(8)]
    if task == "va":
        assert checkpoint["scores"]["p_va"] > 0.3


def test_a_nan_kelm_prediction_is_an_error_naming_the_model_task_window_and_video(monkeypatch):
    from avaffect.models.functionals import KelmSettings, predict_kelm, train_kelm
    from avaffect.models.kelm import KernelELM

    rng = np.random.default_rng(7)
    train_set = [synthetic(f"t{i}", 40, rng, "expr") for i in range(3)]
    validation = [synthetic("clip 7", 40, rng, "expr")]
    settings = KelmSettings(window_s=2.0, kernel="linear", Cs=(1.0,), weighted=True, folds=3)
    what = "model k, task expr, window 2 s"
    checkpoint = train_kelm("expr", train_set, validation, settings, lambda _: None, what=what)
    # a KELM whose scores are NaN (as from an infinite embedding): softmax and argmax would hide it
    monkeypatch.setattr(KernelELM, "predict", lambda self, X: np.full((len(X), 8), np.nan))
    with pytest.raises(ValueError, match=r"model k, task expr, window 2 s: .*'clip 7'"):
        predict_kelm(checkpoint, validation, [f"c{k}" for k in range(8)], what=what)
    with pytest.raises(ValueError, match=r"model k, task expr, window 2 s: .*'clip 7'"):
        train_kelm("expr", train_set, validation, settings, lambda _: None, what=what)


@pytest.mark.parametrize("family", ["audio_gru", "audio_transformer"])
def test_audio_models_give_one_output_per_label_slot(family):
    # the paper's sizes: 256 GRU units in two layers, or transformer layers with 32 and 16 heads
    config = ModelConfig(family=family, n_features=12, n_outputs=8, slot_steps=5)
    model = build_model(config).eval()
    if family == "audio_gru":
        assert model.gru.num_layers == 2 and model.gru.hidden_size == 256
    else:
        assert [layer.self_attn.num_heads for layer in model.layers] == [32, 16]
    out = model(torch.randn(3, 20, 12))
    assert out.shape == (3, 20, 8)
    slots = out.reshape(3, 4, 5, 8)
    assert torch.allclose(slots, slots[:, :, :1].expand_as(slots))  # EXPR: 4 labels for a 4 s window
    assert model(torch.randn(2, 13, 12)).shape == (2, 13, 8)  # a window cut short keeps its partial slot
    va = build_model(ModelConfig(family=family, n_features=12, n_outputs=2, slot_steps=1)).eval()
    assert va(torch.randn(1, 20, 12)).shape == (1, 20, 2)


def test_label_smoothing_raises_the_loss_of_a_confident_correct_prediction():
    from avaffect.models.training import masked_loss

    raw = torch.full((1, 4, 8), -10.0)
    raw[..., 3] = 10.0
    targets, mask = torch.full((1, 4), 3), torch.ones(1, 4, dtype=torch.bool)
    plain = masked_loss("expr", "mse", raw, targets, mask, None)
    smoothed = masked_loss("expr", "mse", raw, targets, mask, None, label_smoothing=0.1)
    assert plain.item() < 1e-6 < smoothed.item()


def windowed(video, n_windows, rng, task):
    """Synthetic 4 s audio windows at 5 Hz (made by the test): features hold one value per second plus noise;
    VA follows the features step by step, EXPR is one class per second from that second's value."""
    out = []
    for w in range(n_windows):
        seq = synthetic(video, 20, rng, task)
        seq.features = (np.repeat(rng.normal(size=(4, 3)), 5, axis=0) + 0.1 * rng.normal(size=(20, 3))
                        ).astype(np.float32)
        seq.times = 2.0 * w + np.arange(20) / 5.0
        if task == "va":
            seq.labels = np.tanh(seq.features[:, :2])
        else:
            seq.labels = np.repeat((seq.features[:, 0].reshape(4, 5).mean(axis=1) > 0) * 4, 5)
        out.append(seq)
    return out


@pytest.mark.parametrize(("family", "task"), [("audio_gru", "expr"), ("audio_transformer", "va")])
def test_audio_models_train_through_the_shared_loop(family, task):
    from avaffect.models.training import audio_architecture

    rng = np.random.default_rng(4)
    train_set = [s for i in range(4) for s in windowed(f"t{i}", 6, rng, task)]
    validation = windowed("v", 6, rng, task)
    settings = TrainSettings(window=20, hop=20, epochs=15, batch_size=8, learning_rate=3e-3, weight_decay=0.0,
                             patience=15, seed=0, label_smoothing=0.1)
    audio = {"units": 32, "gru_layers": 2, "heads": [4, 2], "dense": 16, "dropout": 0.0, "label_smoothing": 0.1}
    architecture = audio_architecture(audio, task, 1.0, 5.0)
    assert architecture["slot_steps"] == (5 if task == "expr" else 1)
    best, history = train(task, train_set, validation, family, architecture, settings, "cpu", lambda _: None,
                          what="model m")
    assert history[-1]["loss"] < history[0]["loss"]
    assert best["scores"]["accuracy" if task == "expr" else "p_va"] > (0.8 if task == "expr" else 0.4)
    model, norm = load_checkpoint(best, "cpu")
    assert model.config.slot_steps == architecture["slot_steps"]


def test_early_stopping_keeps_the_best_epoch_and_stops_after_patience_epochs_without_a_better_one():
    stopping, logged = EarlyStopping("p_va", 2), []
    improved = [stopping.improved(epoch, {"p_va": score}) for epoch, score in enumerate([0.1, 0.3, 0.2], 1)]
    assert improved == [True, True, False] and not stopping.exhausted(3, logged.append)
    assert not stopping.improved(4, {"p_va": 0.3}) and stopping.exhausted(4, logged.append)
    assert stopping.best_epoch == 2 and logged == ["early stop after 4 epochs: best epoch 2"]


def test_early_stopping_never_takes_a_nan_score_for_better():
    nan = float("nan")
    stopping = EarlyStopping("macro_f1", 2)
    assert stopping.improved(1, {"macro_f1": nan})  # kept only until an epoch with a score comes
    assert stopping.improved(2, {"macro_f1": 0.2})
    assert not stopping.improved(3, {"macro_f1": nan}) and not stopping.improved(4, {"macro_f1": 0.1})
    assert stopping.best_epoch == 2 and stopping.best_score == 0.2 and stopping.exhausted(4, lambda _: None)


def test_best_window_ignores_nan_scores_and_refuses_when_every_score_is_nan():
    from avaffect.models.selection import best_window

    nan = float("nan")
    validation = {"1": {"p_va": nan, "ccc_valence": nan}, "2": {"p_va": 0.3}, "4": {"p_va": 0.5}, "8": {"p_va": nan}}
    best, scores = best_window(validation, "va", "model m, task va")
    assert best == "4" and list(scores) == ["1", "2", "4", "8"] and scores["2"] == 0.3 and np.isnan(scores["8"])
    assert best_window({"2": {"macro_f1": 0.4}, "4": {"macro_f1": 0.4}}, "expr", "model m, task expr")[0] == "2"
    with pytest.raises(ValueError, match=r"model m, task va: .*p_va is NaN for every window \(1, 8 s\)"):
        best_window({"1": {"p_va": nan}, "8": {"p_va": nan}}, "va", "model m, task va")
