"""Per-video tables on disk: Parquet and JSON written atomically, embeddings as float32 lists."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder and rename it, so no half-written file survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its private 0600 file would keep other users of a shared results folder out.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    # A writer killed outright (SIGKILL, power loss) cannot remove its temporary file; the next complete
    # write of the same path does.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


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
