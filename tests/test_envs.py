import tomllib

import yaml
from conftest import REPO


def test_conda_env_pins_equal_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "main.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert sorted(pip) == sorted(project)
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
