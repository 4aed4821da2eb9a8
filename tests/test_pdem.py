"""PDEM plumbing. The real weights (about 660 MB) cannot be had here: the model is built from the release's
config in ../shared/weights/pdem-config with RANDOM weights, so these tests check shapes, batching, window
alignment and weight loading, never what the embeddings mean."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import small_pdem_config
from safetensors.torch import save_file

from avaffect.audio.logmel import audio_window_embeddings
from avaffect.audio.pdem import (
    PdemError,
    build_pdem,
    frame_centres,
    frame_stride,
    load_pdem_weights,
    pdem_window_embeddings,
    pool_steps,
)
from avaffect.media.timeline import audio_window_grid

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


def test_steps_average_the_frames_centred_around_them(pdem):
    hidden = np.arange(49, dtype=np.float32)[:, None].repeat(2, axis=1)  # 1 s of 20 ms frames (49 for 1 s)
    centres = frame_centres(pdem[0], 49, RATE)
    np.testing.assert_allclose(centres[:2], [0.0125, 0.0325])  # 400 samples every 320
    pooled = pool_steps(hidden, centres, 5, 0.2)
    # step k at 0.2 k s averages the frames centred in [0.2 k - 0.1, 0.2 k + 0.1)
    assert pooled[:, 0].tolist() == pytest.approx([2.0, 9.5, 19.5, 29.5, 39.5])
    assert np.isnan(pool_steps(hidden[:3], centres[:3], 2, 0.2)[1]).all()


class ConvEncoderOnly(torch.nn.Module):
    """A PDEM's convolutional encoder alone, standing in for the PDEM: each output frame sees only its own
    samples, so the frames a click reaches are known (the transformer on top mixes every frame)."""

    def __init__(self, pdem: torch.nn.Module):
        super().__init__()
        self.config = pdem.config
        self.encoder = pdem.feature_extractor

    def forward(self, input_values: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(last_hidden_state=self.encoder(input_values).transpose(1, 2))


def test_a_click_lands_in_the_step_stamped_at_its_time_as_in_the_logmel_path(shared, tmp_path):
    torch.manual_seed(0)
    model, extractor = build_pdem(small_pdem_config(shared, tmp_path))
    encoder = ConvEncoderOnly(model).eval()
    fps, seconds = 25.0, 3.0
    windows, columns = audio_window_grid([(0.0, seconds)], seconds, int(seconds * fps), fps, STEP_HZ, 2.0, 1.0)
    assert windows == [(0.0, 2.0), (1.0, 3.0)]
    silence = np.zeros(int(seconds * RATE), np.float32)

    def responses(audio):
        pdem = pdem_window_embeddings(encoder, extractor, audio, RATE, windows, STEP_HZ, 2, "cpu")
        logmel = audio_window_embeddings(audio, RATE, [(0.0, seconds)], int(seconds * fps), fps, STEP_HZ, 2.0, 1.0,
                                         40, 0.025, 0.01, 50, 7600)[1]
        return pdem, logmel

    quiet = responses(silence)
    # each click is 0.14 to 0.16 s after a step's time, 0.04 to 0.06 s before the next one's
    for click_s in (1.34, 1.56, 2.15):
        audio = silence.copy()
        at = int(round(click_s * RATE))
        audio[at:at + 2] = [1.0, -1.0]  # zero mean: the extractor's normalisation leaves the silence at zero
        change = [np.linalg.norm(loud - still, axis=1) for loud, still in zip(responses(audio), quiet, strict=True)]
        for window in (i for i, (start, end) in enumerate(windows) if start <= click_s < end):
            rows = columns["window"] == window
            pdem_step, logmel_step = (int(np.argmax(c[rows])) for c in change)
            assert pdem_step == logmel_step, (click_s, window)
            assert abs(columns["time_s"][rows][pdem_step] - click_s) < 0.5 / STEP_HZ, (click_s, window)
            assert abs((columns["frame"][rows][pdem_step] - 1) / fps - click_s) < 0.5 / STEP_HZ, (click_s, window)


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
