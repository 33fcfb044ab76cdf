"""Snapshot files of a batch: its grade projections, BT scores and comparisons.

In a pipeline run notebook 03 writes these files (through :func:`cjlib.notebook.snapshot_batch`)
and owns ``grade_projections.csv`` in the run folder: notebook 02's execute artefacts are not
meant to write that file too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from cjlib.report.loading import BatchRecord, stored_scores

#: The snapshot tables, each written as ``<name>.csv`` (and ``<name>.parquet``).
SNAPSHOT_TABLES = ("grade_projections", "bt_scores", "comparisons")


def snapshot_tables(frames: BatchRecord) -> dict[str, pd.DataFrame]:
    """The rows of each table of :data:`SNAPSHOT_TABLES` for one batch.

    ``grade_projections`` are the stored projections, ``bt_scores`` the stored scores with
    win/loss counts (:func:`cjlib.report.loading.stored_scores`, essay id as a column),
    ``comparisons`` every pair.
    """
    return {
        "grade_projections": frames.projections,
        "bt_scores": stored_scores(frames).reset_index(),
        "comparisons": frames.comparisons,
    }


def write_snapshots(frames: BatchRecord, run_dir: str | Path) -> dict[str, Path]:
    """Write the batch's grade projections, BT scores and comparisons into ``run_dir``.

    CSV always (``grade_projections.csv``, ``bt_scores.csv``, ``comparisons.csv``), and
    Parquet next to each when ``pyarrow`` is importable. Existing files of those names are
    replaced.

    Returns
    -------
    dict
        Table name (``<name>_parquet`` for the Parquet copy) → path of each file written.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    parquet = importlib.util.find_spec("pyarrow") is not None
    written: dict[str, Path] = {}
    for name, table in snapshot_tables(frames).items():
        path = run_dir / f"{name}.csv"
        table.to_csv(path, index=False)
        written[name] = path
        if parquet:
            path = run_dir / f"{name}.parquet"
            table.to_parquet(path, index=False)
            written[f"{name}_parquet"] = path
    return written
