import numpy as np
import torch

from avaffect.features import audio_window_embeddings, log_mel, logmel_statistics, mel_filterbank
from avaffect.models import TemporalTransformer, TransformerConfig
from avaffect.training import (
    Normalizer,
    StepSequence,
    TrainSettings,
    class_weights,
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


def test_transformer_shapes_and_padding():
    model = TemporalTransformer(TransformerConfig(n_features=5, n_outputs=8)).eval()
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
    norm = Normalizer.fit([seq])
    data = make_windows([seq], norm, "va", 20, 10)
    assert data.inputs.shape == (2, 20, 4)
    assert not data.mask[0, 3] and data.mask.sum() == (seq.present & ~np.isnan(seq.labels).any(1)).sum() + \
        (seq.present[10:20] & ~np.isnan(seq.labels[10:20]).any(1)).sum()
    assert data.padding.sum() == 0


def test_class_weights_are_inverse_frequency():
    seq = StepSequence("v", np.arange(1, 5), np.zeros(4), np.zeros((4, 1), np.float32), np.array([0, 0, 0, 1]))
    weights = class_weights([seq], 3)
    assert weights[2] == 0 and weights[1] == 3 * weights[0]


def test_training_learns_a_mapping_and_is_reproducible():
    rng = np.random.default_rng(1)
    train_set = [synthetic(f"t{i}", 60, rng, "va") for i in range(6)]
    validation = [synthetic("v", 60, rng, "va")]
    settings = TrainSettings(window=20, hop=10, epochs=25, batch_size=8, learning_rate=3e-3,
                             weight_decay=0.0, patience=25, seed=0)
    arch = {"d_model": 32, "n_layers": 1, "n_heads": 4, "dropout": 0.0}
    first, history = train("va", train_set, validation, arch, settings, "cpu", lambda _: None)
    again, _ = train("va", train_set, validation, arch, settings, "cpu", lambda _: None)
    assert first["scores"]["p_va"] > 0.7
    assert first["scores"] == again["scores"]
    assert history[-1]["loss"] < history[0]["loss"]


def test_predict_averages_overlapping_windows():
    rng = np.random.default_rng(2)
    seq = synthetic("v", 45, rng, "expr")
    norm = Normalizer.fit([seq])
    model = TemporalTransformer(TransformerConfig(n_features=4, n_outputs=8, d_model=16, n_heads=4,
                                                  n_layers=1))
    (out,) = predict(model, norm, "expr", [seq], window=20, hop=10, device="cpu")
    assert out.shape == (45, 8) and np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
