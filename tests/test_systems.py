"""Named fusion systems: resolution of config `systems:` against the models and their tasks, and its errors."""

import pytest
import yaml
from conftest import REPO

from avaffect.fusion.systems import System, candidate_systems, model_tasks, resolve_systems

TASKS = ["va", "expr"]
MODELS = {"visual": {}, "audio": {}, "visual_kelm": {}, "va_only": {"tasks": ["va"]}}


def test_a_plain_list_holds_for_every_task_and_models_are_sorted():
    systems = resolve_systems({"sys2": {"models": ["visual", "audio"], "method": "dwf"}}, MODELS, TASKS)
    assert systems == {"sys2": System("sys2", "dwf", {"va": ("audio", "visual"), "expr": ("audio", "visual")})}


def test_per_task_lists_may_differ_and_may_use_a_model_trained_for_one_task():
    spec = {"models": {"va": ["visual", "va_only"], "expr": ["visual", "visual_kelm"]}, "method": "rf"}
    system = resolve_systems({"mixed": spec}, MODELS, TASKS)["mixed"]
    assert system.models == {"va": ("va_only", "visual"), "expr": ("visual", "visual_kelm")}


def test_lists_of_tasks_that_are_not_configured_are_ignored():
    spec = {"models": {"va": ["visual"], "expr": ["audio"]}, "method": "none"}
    assert resolve_systems({"s": spec}, MODELS, ["va"])["s"].models == {"va": ("visual",)}


def test_model_tasks_default_to_every_configured_task():
    assert model_tasks(MODELS, TASKS) == {"visual": ("va", "expr"), "audio": ("va", "expr"),
                                          "visual_kelm": ("va", "expr"), "va_only": ("va",)}
    assert model_tasks({"m": {"tasks": ["expr", "va"]}}, ["va"]) == {"m": ("va",)}


@pytest.mark.parametrize(("spec", "message"), [
    ({"models": ["visual", "nosuch"], "method": "dwf"}, "'nosuch' is not a model of config models"),
    ({"models": ["visual", "va_only"], "method": "dwf"}, "model 'va_only' is not trained for task expr"),
    ({"models": ["visual", "audio"], "method": "none"}, "method none passes one model through unfused, got 2"),
    ({"models": {"va": ["visual"]}, "method": "none"}, "no models for task(s) ['expr']"),
    ({"models": {"va": ["visual"], "expr": []}, "method": "swf"}, "systems.bad.models (expr): no models"),
    ({"models": ["audio", "audio"], "method": "swf"}, "a model is listed twice"),
    ({"models": ["audio"], "method": "mean"}, "systems.bad.method: 'mean' is not one of"),
])
def test_a_bad_system_is_an_error_naming_it_and_what_is_wrong(spec, message):
    with pytest.raises(ValueError, match="config systems.bad") as error:
        resolve_systems({"good": {"models": ["visual"], "method": "none"}, "bad": spec}, MODELS, TASKS)
    assert message in str(error.value)


def test_no_system_is_an_error():
    with pytest.raises(ValueError, match="at least one system"):
        resolve_systems({}, MODELS, TASKS)


def test_the_submission_chooses_among_every_system_or_the_one_named():
    systems = resolve_systems({"a": {"models": ["visual"], "method": "none"},
                               "b": {"models": ["visual", "audio"], "method": "swf"}}, MODELS, TASKS)
    assert candidate_systems("best", systems) == ["a", "b"]
    assert candidate_systems("b", systems) == ["b"]
    with pytest.raises(ValueError, match=r"fusion.submit: 'c' is neither best nor a system .*\['a', 'b'\]"):
        candidate_systems("c", systems)


def test_the_default_config_defines_four_systems_in_the_papers_shape():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    systems = resolve_systems(config["systems"], config["models"], config["tasks"])
    assert [(name, s.method) for name, s in systems.items()] == [
        ("sys1", "none"), ("sys2", "dwf"), ("sys3", "dwf"), ("sys4", "rf")]
    for task in config["tasks"]:
        assert systems["sys1"].models[task] == ("visual",)
        assert set(systems["sys2"].models[task]) == {"visual", "audio"}
        assert set(systems["sys2"].models[task]) < set(systems["sys3"].models[task])
        assert systems["sys4"].models[task] == systems["sys3"].models[task]
    assert 10 in config["fusion"]["rf_trees"]  # the paper's forest


def test_the_affwild2_overlay_defines_the_papers_systems_per_task():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    overlay = yaml.safe_load((REPO / "config" / "affwild2.yaml").read_text())
    # a config file given later replaces a model or system of the same name key by key, and adds new ones
    for section in ("models", "systems"):
        for name, spec in overlay[section].items():
            config[section][name] = config[section].get(name, {}) | spec
    systems = resolve_systems(config["systems"], config["models"], config["tasks"])
    assert {name: s.method for name, s in systems.items() if name.startswith("sys")} == {
        "sys1": "none", "sys2": "dwf", "sys3": "dwf", "sys4": "rf"}
    for task, face, kelm in (("va", "visual_va", "kelm_va"), ("expr", "visual_expr", "kelm_expr")):
        assert systems["sys1"].models[task] == (face,)
        assert set(systems["sys2"].models[task]) == {face, "audio_v3"}
        assert set(systems["sys3"].models[task]) == set(systems["sys4"].models[task]) == {face, "audio_v3", kelm}
        for audio in ("audio_v1", "audio_v2", "audio_v3"):  # each trained and scored alone too
            assert systems[f"{audio}_alone"].models[task] == (audio,)
