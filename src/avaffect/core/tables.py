"""Per-video tables on disk: Parquet and JSON written atomically, embeddings as float32 lists."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from avaffect.core.files import atomic_write

HEAD_COLUMN_PREFIX = "head_"
"""Columns `head_<output>` beside the embedding hold a static model's head outputs (NaN where no face)."""


def write_parquet(table: pd.DataFrame, path: Path) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    atomic_write(path, lambda tmp: pq.write_table(arrow, tmp))


def read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def write_json(data: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n"))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def embedding_column(matrix: np.ndarray, present: np.ndarray) -> pa.Array:
    """Rows of `matrix` as fixed-size float32 lists; null where `present` is False."""
    dim = matrix.shape[1]
    values = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~np.asarray(present, dtype=bool)))


def write_embeddings(columns: dict[str, np.ndarray], matrix: np.ndarray, present: np.ndarray, path: Path) -> None:
    """Parquet with the given per-row columns and an `embedding` column (null where not present)."""
    arrays = {name: pa.array(values) for name, values in columns.items()}
    arrays["embedding"] = embedding_column(matrix, present)
    table = pa.table(arrays)
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))
