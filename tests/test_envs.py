import tomllib

import yaml
from conftest import REPO

from avaffect.core.venvs import pip_pins


def test_conda_env_pins_equal_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(pip_pins(REPO / "envs" / "main.yaml")) == sorted(project)
    assert all("==" in pin for pin in project)


def test_default_config_validates_against_schema():
    import jsonschema

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    jsonschema.validate(config, schema)
    config["faces"]["detector"] = "dlib"
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as err:
        assert "dlib" in str(err)
    else:
        raise AssertionError("an unknown detector passed validation")


def merged(base: dict, overlay: dict) -> dict:
    """Snakemake's merge of config files: nested mappings are updated key by key."""
    out = dict(base)
    for key, value in overlay.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_affwild2_overlay_validates_and_sweeps_the_paper_windows():
    import jsonschema

    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    overlay = yaml.safe_load((REPO / "config" / "affwild2.yaml").read_text())
    config = merged(base, overlay)
    jsonschema.validate(config, yaml.safe_load((REPO / "config" / "schema.yaml").read_text()))
    for model in ("visual_va", "visual_expr"):
        assert config["models"][model]["windows_s"] == [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
        assert config["models"][model]["output"] == "per_window"
    assert config["corpus"]["demo"] is False and config["faces"]["detector"] == "retinaface+mediapipe"


def test_affwild2_overlay_has_the_papers_end_to_end_audio_models_on_the_vocals():
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config = merged(base, yaml.safe_load((REPO / "config" / "affwild2.yaml").read_text()))
    end_to_end = {name: (spec["family"], spec["finetune_layers"]) for name, spec in config["models"].items()
                  if spec["extractor"] == "waveform"}
    assert end_to_end == {"audio_v1": ("audio_gru", 2), "audio_v2": ("audio_transformer", 2),
                          "audio_v3": ("audio_transformer", 4)}
    assert config["separation"]["method"] == "spleeter" and config["audio_model"]["heads"] == [32, 16]
    assert not any(spec["extractor"] == "waveform" for spec in base["models"].values())  # the demo stays fast
