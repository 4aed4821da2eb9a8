"""PDEM plumbing. The real weights (about 660 MB) cannot be had here: the model is built from the release's
config in ../shared/weights/pdem-config with RANDOM weights, so these tests check shapes, batching, window
alignment and weight loading, never what the embeddings mean."""

import numpy as np
import pytest
import torch
from conftest import small_pdem_config
from safetensors.torch import save_file

from avaffect.audio.pdem import (
    PdemError,
    build_pdem,
    frame_stride,
    load_pdem_weights,
    pdem_window_embeddings,
    pool_steps,
)

RATE = 16000
STEP_HZ = 5.0


@pytest.fixture(scope="module")
def pdem(shared):
    torch.manual_seed(0)
    model, extractor = build_pdem(shared / "weights" / "pdem-config")
    return model, extractor


@pytest.fixture(scope="module")
def speech_like():
    rng = np.random.default_rng(0)
    t = np.arange(3 * RATE) / RATE
    return (0.3 * np.sin(2 * np.pi * 180 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.normal(size=len(t))).astype(np.float32)


def test_release_config_builds_the_large_robust_architecture(pdem):
    model, extractor = pdem
    assert model.config.num_hidden_layers == 12 and model.config.hidden_size == 1024
    assert extractor.sampling_rate == RATE and extractor.do_normalize
    assert frame_stride(model) == 320  # 20 ms frames at 16 kHz
    assert not model.training


def test_window_embeddings_shapes_batching_and_alignment(pdem, speech_like):
    model, extractor = pdem
    windows = [(0.0, 1.0), (0.4, 1.4), (2.0, 2.6)]
    one = pdem_window_embeddings(model, extractor, speech_like, RATE, windows, STEP_HZ, 1, "cpu")
    assert one.shape == (5 + 5 + 3, 1024) and np.isfinite(one).all()
    batched = pdem_window_embeddings(model, extractor, speech_like, RATE, windows, STEP_HZ, 3, "cpu")
    np.testing.assert_allclose(batched, one, atol=2e-4)  # batch size changes memory, not the result
    # a window sees only its own samples: the same audio shifted by 0.4 s gives the same steps
    shifted = np.concatenate([np.zeros(int(0.4 * RATE), np.float32), speech_like[:-int(0.4 * RATE)]])
    moved = pdem_window_embeddings(model, extractor, shifted, RATE, [(0.4, 1.4)], STEP_HZ, 1, "cpu")
    np.testing.assert_allclose(moved, one[:5], atol=2e-4)
    assert pdem_window_embeddings(model, extractor, speech_like, RATE, [], STEP_HZ, 4, "cpu").shape == (0, 1024)
    with pytest.raises(ValueError, match="44100 Hz"):
        pdem_window_embeddings(model, extractor, speech_like, 44100, windows, STEP_HZ, 1, "cpu")


def test_steps_average_the_frames_that_start_in_them():
    hidden = np.arange(49, dtype=np.float32)[:, None].repeat(2, axis=1)  # 1 s of 20 ms frames (49 for 1 s)
    pooled = pool_steps(hidden, 0.02, 5, 0.2)
    assert pooled[:, 0].tolist() == pytest.approx([4.5, 14.5, 24.5, 34.5, 44.0])
    assert np.isnan(pool_steps(hidden[:3], 0.02, 2, 0.2)[1]).all()


def test_release_weights_load_into_the_backbone_and_a_foreign_file_is_refused(shared, tmp_path):
    torch.manual_seed(1)
    source, _ = build_pdem(small_pdem_config(shared, tmp_path))
    release = {f"wav2vec2.{k}": v.contiguous() for k, v in source.state_dict().items()}
    release |= {"classifier.dense.weight": torch.zeros(64, 64), "classifier.out_proj.weight": torch.zeros(3, 64)}
    save_file(release, str(tmp_path / "model.safetensors"))
    torch.manual_seed(2)
    target, _ = build_pdem(tmp_path)
    load_pdem_weights(target, tmp_path / "model.safetensors")
    x = torch.randn(1, RATE // 2)
    with torch.inference_mode():
        assert torch.equal(target(x).last_hidden_state, source(x).last_hidden_state)
    del release["wav2vec2.encoder.layers.1.final_layer_norm.weight"]
    save_file(release, str(tmp_path / "truncated.safetensors"))
    with pytest.raises(PdemError, match="truncated.safetensors: not a PDEM release"):
        load_pdem_weights(target, tmp_path / "truncated.safetensors")
