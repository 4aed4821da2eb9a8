"""Label-rate predictions of one trained model (a checkpoint of rule train) for step sequences."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from avaffect.core.devices import resolve_device
from avaffect.corpus.tasks import PREDICTION_COLUMNS
from avaffect.models.functionals import predict_kelm
from avaffect.models.sequences import StepSequence, prediction_table
from avaffect.models.training import load_checkpoint, predict


def checkpoint_predictions(checkpoint: dict, sequences: Sequence[StepSequence], task: str, device: str, *,
                           what: str) -> pd.DataFrame:
    """The prediction table (sequences.prediction_table) of the model saved in `checkpoint`: a kernel ELM of
    functionals, or a network run over its windows (training.predict) on `device` (config device)."""
    columns = list(PREDICTION_COLUMNS[task])
    if checkpoint.get("family") == "kelm":
        return predict_kelm(checkpoint, sequences, columns, what=what)
    device = resolve_device(device)
    model, normalizer = load_checkpoint(checkpoint, device)
    outputs = predict(model, normalizer, task, sequences, checkpoint["window"], checkpoint["hop"], device,
                      what=what)
    return prediction_table(sequences, outputs, columns)
