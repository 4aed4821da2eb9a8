"""Choosing on validation: the better of two scores, and the best window of a sweep. numpy only, so that the
small select_window jobs start without torch."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from avaffect.corpus.metrics import PRIMARY_METRIC


def is_better(score: float, best: float) -> bool:
    """Whether a validation `score` beats the `best` so far. A NaN score (an undefined metric: the CCC of a constant
    prediction against constant labels) never does, and any other beats a NaN best."""
    return not np.isnan(score) and (np.isnan(best) or score > best)


def best_window(validation: Mapping[str, Mapping[str, float]], task: str, what: str) -> tuple[str, dict[str, float]]:
    """The window (of the sweep's tags) whose model scores best on its validation scores by the task's metric, and
    each window's score; ties go to the first. A NaN score never wins; NaN for every window is an error naming
    `what` (model, task)."""
    metric = PRIMARY_METRIC[task]
    scores = {window: values[metric] for window, values in validation.items()}
    scored = {window: score for window, score in scores.items() if not np.isnan(score)}
    if not scored:
        raise ValueError(f"{what}: the validation {metric} is NaN for every window ({', '.join(scores)} s); "
                         "see those windows' training logs")
    return max(scored, key=scored.get), scores
