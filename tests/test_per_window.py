"""Sequence-to-one dynamic models (`output: per_window`): one output per window, placed at the window's centre."""

import numpy as np
import pytest
import torch
import yaml
from test_workflow import make_workdir, snakemake

from avaffect.media.timeline import interpolate_columns, window_centres
from avaffect.models.families import ModelConfig, build_model
from avaffect.models.normalization import Normalizer
from avaffect.models.sequences import StepSequence
from avaffect.models.training import (
    TrainSettings,
    load_checkpoint,
    make_windows,
    per_window_outputs,
    predict,
    train,
    window_targets,
)

RATE_HZ = 5.0


@pytest.mark.parametrize("family", ["transformer", "tcn_transformer"])
def test_a_per_window_model_gives_one_output_per_window_whatever_the_padding(family):
    model = build_model(ModelConfig(family=family, n_features=5, n_outputs=8, output="per_window")).eval()
    x = torch.randn(3, 20, 5)
    padding = torch.zeros(3, 20, dtype=torch.bool)
    padding[:, 15:] = True
    out = model(x, padding)
    assert out.shape == (3, 8)
    padded_with_junk = x.clone()
    padded_with_junk[:, 15:] = 100.0
    assert torch.allclose(model(padded_with_junk, padding), out, atol=1e-5)
    # the padded window gives what the 15 steps give alone, as prediction feeds a window cut short by the end
    assert torch.allclose(model(x[:, :15]), out, atol=1e-5)


def test_only_the_dynamic_families_have_a_per_window_output():
    with pytest.raises(ValueError, match="model family 'linear' has no per_window output"):
        build_model(ModelConfig(family="linear", n_features=5, n_outputs=2, output="per_window"))
    with pytest.raises(ValueError, match="unknown model output 'per_frame'"):
        build_model(ModelConfig(family="transformer", n_features=5, n_outputs=2, output="per_frame"))


def sequence(labels: np.ndarray, absent: list[int]) -> StepSequence:
    n = len(labels)
    features = np.ones((n, 2), np.float32)
    features[absent] = np.nan
    return StepSequence("v", np.arange(1, n + 1), np.arange(n) / RATE_HZ, features, labels)


def windows_of(task: str, sequences: list[StepSequence], window: int):
    normalizer = Normalizer.fit(sequences, "zscore")
    return window_targets(task, make_windows(sequences, normalizer.transform(sequences), task, window, window))


def test_window_targets_are_the_mean_va_and_the_majority_class_of_the_counted_steps():
    # windows of 4 steps: [0, 4), [4, 8), [6, 10) (the last ends at the end), and a 3-step sequence padded to 4;
    # step 1 has no face, step 2 an invalid label: neither counts
    va = np.array([[0.2, -0.4], [0.9, 0.9], [np.nan, np.nan], [0.4, 0.0], *[[np.nan, np.nan]] * 4, [0.1, 0.3],
                   [0.3, 0.5]])
    short = np.array([[0.5, 0.5], [np.nan, np.nan], [-0.5, 0.1]])
    data = windows_of("va", [sequence(va, absent=[1]), sequence(short, absent=[])], 4)
    assert data.targets.shape == (4, 2) and data.mask.tolist() == [True, False, True, True]
    assert np.allclose(data.targets[[0, 2, 3]].numpy(), [[0.3, -0.2], [0.2, 0.4], [0.0, 0.3]])
    assert data.padding[3].tolist() == [False, False, False, True]

    # ties go to the lowest class
    expr = np.array([3, 5, -1, 3, 2, 6, 6, 2, 6, -1])
    short = np.array([-1, 4, -1])
    data = windows_of("expr", [sequence(expr, absent=[1]), sequence(short, absent=[1])], 4)
    assert data.targets.shape == (4,) and data.mask.tolist() == [True, True, True, False]
    assert data.targets[:3].tolist() == [3, 2, 6]


class FirstStepModel(torch.nn.Module):
    """Gives, for a window, the first feature of its first step as its VA output (after tanh)."""

    config = ModelConfig(family="transformer", n_features=1, n_outputs=2, output="per_window")

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        return torch.atanh(x[:, 0, :1]).repeat(1, 2)


def test_window_outputs_at_their_centres_are_interpolated_onto_every_step():
    times = np.arange(12) / RATE_HZ  # 0 .. 2.2 s; windows of 5 steps every 5 start at 0, 5 and (the last) 7
    assert window_centres(times, np.array([0, 5, 7]), 5) == pytest.approx([0.4, 1.4, 1.8])
    assert window_centres(times[:3], np.array([0]), 5) == pytest.approx([0.2])  # cut short by the end
    x = torch.from_numpy((np.arange(12) / 10).astype(np.float32))[:, None]  # window outputs 0.0, 0.5, 0.7
    seq = sequence(np.zeros((12, 2)), absent=[])
    out = per_window_outputs(FirstStepModel(), "va", x, seq, 5, 5)
    expected = [0, 0, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.7, 0.7]  # held before 0.4 s and after 1.8 s
    assert out.shape == (12, 2) and out[:, 0] == pytest.approx(expected, abs=1e-6)
    # a window without any face places nothing: the steps around it take its neighbours' line
    seq = sequence(np.zeros((12, 2)), absent=[5, 6, 7, 8, 9])
    out = per_window_outputs(FirstStepModel(), "va", x, seq, 5, 5)
    assert out[:, 0] == pytest.approx(np.clip((times - 0.4) * 0.5, 0, 0.7), abs=1e-6)
    assert interpolate_columns(np.array([0.0, 1.0]), np.array([[0.0, 2.0], [1.0, 4.0]]),
                               np.array([-1.0, 0.25, 2.0])).tolist() == [[0.0, 2.0], [0.25, 2.5], [1.0, 4.0]]


def blocks(video: str, n_blocks: int, block: int, rng: np.random.Generator) -> StepSequence:
    """Steps whose noisy feature varies about a level held for `block` steps; the VA label is a function of the
    block's level, so only the whole window tells it well."""
    levels = rng.normal(size=n_blocks)
    features = (np.repeat(levels, block)[:, None] + rng.normal(scale=1.0, size=(n_blocks * block, 1)))
    labels = np.tanh(np.repeat(levels, block))[:, None].repeat(2, axis=1) * np.array([1.0, -1.0])
    n = n_blocks * block
    return StepSequence(video, np.arange(1, n + 1), np.arange(n) / RATE_HZ, features.astype(np.float32), labels)


@pytest.mark.parametrize("family", ["transformer", "tcn_transformer"])
def test_a_per_window_model_learns_a_label_that_is_a_function_of_the_window(family):
    rng = np.random.default_rng(0)
    train_set = [blocks(f"t{i}", 10, 10, rng) for i in range(8)]
    validation = [blocks("v", 10, 10, rng)]
    settings = TrainSettings(window=10, hop=5, epochs=20, batch_size=8, learning_rate=3e-3, weight_decay=0.0,
                             patience=20, seed=0, loss="ccc")
    arch = {"d_model": 32, "n_layers": 1, "n_heads": 4, "dropout": 0.0, "output": "per_window"}
    best, history = train("va", train_set, validation, family, arch, settings, "cpu", lambda _: None, what="model m")
    assert history[-1]["loss"] < history[0]["loss"]
    assert best["scores"]["p_va"] > 0.5  # a constant prediction has a CCC of 0
    assert best["config"]["output"] == "per_window"
    model, norm = load_checkpoint(best, "cpu")
    assert model.config.output == "per_window"
    (out,) = predict(model, norm, "va", validation, best["window"], best["hop"], "cpu", what="model m")
    assert out.shape == (100, 2) and np.isfinite(out).all()


MODEL = {"family": "transformer", "modality": "face", "extractor": "landmarks", "windows_s": [4.0],
         "normalization": "zscore", "loss": "mse", "smoothing": "hamming"}


@pytest.mark.workflow
def test_the_schema_takes_per_window_and_refuses_an_unknown_output(tmp_path):
    workdir = make_workdir(tmp_path)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())

    def plan(models: dict):
        config["models"] = models  # replaced, not merged into the default models
        config["systems"] = {"alone": {"models": ["window"], "method": "none"}}  # the defaults' name other models
        (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        return snakemake(workdir, "-n", "results/models/window/va/selected.json", check=False)

    planned = plan({"window": MODEL | {"output": "per_window"}, "steps": MODEL})
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    assert "rule train:" in planned.stdout
    refused = plan({"window": MODEL | {"output": "per_frame"}})
    assert refused.returncode != 0
    assert "'per_frame' is not one of ['per_step', 'per_window']" in refused.stdout + refused.stderr
    refused = plan({"window": MODEL | {"family": "linear", "output": "per_window"}})
    assert refused.returncode != 0
    message = refused.stdout + refused.stderr
    assert "'per_window' is not one of ['per_step']" in message
    assert "output: per_window needs family" in message  # the description of the rule it breaks
