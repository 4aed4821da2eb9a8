"""Named fusion systems: which models a submission fuses for each task, and by which method.

A system (config `systems:`) is a set of models per task with a method: "none" passes its one model's
predictions through unfused, "swf"/"dwf"/"rf" fuse them (fusion.selection). The SUN ABAW 2024 paper submits
four such systems: the face model alone, + the audio model (DWF), + the functional KELM (DWF), and a random
forest over the same models. Every system is fused and scored out of fold, so that they can be ranked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from avaffect.fusion.dirichlet import METHODS

NO_FUSION = "none"
SYSTEM_METHODS = (NO_FUSION, *METHODS)
BEST_SYSTEM = "best"
"""fusion.submit value: submit, per task, the system with the best out-of-fold validation score."""


@dataclass(frozen=True)
class System:
    """A named system: its method and, per task, the models it reads (sorted, so the order of a user's YAML
    list neither changes a fusion's weights or features nor counts as a params change that reruns it)."""

    name: str
    method: str
    models: Mapping[str, tuple[str, ...]]


def model_tasks(models: Mapping[str, Mapping], tasks: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The tasks each model is trained for: its `tasks` list (default every task), among the configured tasks,
    in their order."""
    return {name: tuple(t for t in tasks if t in spec.get("tasks", tasks)) for name, spec in models.items()}


def _task_models(name: str, listed: Sequence[str] | Mapping[str, Sequence[str]], tasks: Sequence[str]
                 ) -> dict[str, Sequence[str]]:
    """A system's model list per task: a plain list holds for every task."""
    if not isinstance(listed, Mapping):
        return {task: listed for task in tasks}
    missing = [task for task in tasks if task not in listed]
    if missing:
        raise ValueError(f"config systems.{name}.models: no models for task(s) {missing}; give a list per task "
                         f"{list(tasks)}, or one list for every task")
    return {task: listed[task] for task in tasks}


def resolve_systems(systems: Mapping[str, Mapping], models: Mapping[str, Mapping], tasks: Sequence[str]
                    ) -> dict[str, System]:
    """The configured systems, checked against the models and their tasks; a ValueError names what is wrong.

    systems: name -> {"models": [model, ...] or {task: [model, ...]}, "method": one of SYSTEM_METHODS}.
    Per-task lists for tasks that are not configured are ignored.
    """
    if not systems:
        raise ValueError("config systems: define at least one system")
    trained = model_tasks(models, tasks)
    resolved = {}
    for name, spec in systems.items():
        method = spec["method"]
        if method not in SYSTEM_METHODS:
            raise ValueError(f"config systems.{name}.method: '{method}' is not one of {list(SYSTEM_METHODS)}")
        per_task = {}
        for task, listed in _task_models(name, spec["models"], tasks).items():
            where = f"config systems.{name}.models ({task})"
            if not listed:
                raise ValueError(f"{where}: no models")
            if len(set(listed)) != len(listed):
                raise ValueError(f"{where}: a model is listed twice in {list(listed)}")
            for model in listed:
                if model not in models:
                    raise ValueError(f"{where}: '{model}' is not a model of config models ({sorted(models)})")
                if task not in trained[model]:
                    raise ValueError(f"{where}: model '{model}' is not trained for task {task} "
                                     f"(its models.{model}.tasks: {list(trained[model])})")
            if method == NO_FUSION and len(listed) != 1:
                raise ValueError(f"{where}: method {NO_FUSION} passes one model through unfused, "
                                 f"got {len(listed)}: {list(listed)}")
            per_task[task] = tuple(sorted(listed))
        resolved[name] = System(name, method, per_task)
    return resolved


def candidate_systems(submit: str, systems: Mapping[str, System]) -> list[str]:
    """The systems the submission chooses among: every one for "best", else the one named."""
    if submit == BEST_SYSTEM:
        return list(systems)
    if submit not in systems:
        raise ValueError(f"config fusion.submit: '{submit}' is neither {BEST_SYSTEM} nor a system of config "
                         f"systems ({list(systems)})")
    return [submit]
