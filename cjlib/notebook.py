"""What every pipeline notebook needs: parameters, the run folder, the batch record, small tables.

Notebooks 01–03 import only this module (and :mod:`cjlib.workflow`, :mod:`cjlib.db`), so they
start without plotting or statistics code: importing it loads neither matplotlib nor scipy (a
test checks). Notebook 04 and :mod:`cjlib.report` build on the same helpers.

How the batch id travels between notebooks: notebook 02 calls :func:`write_batch_record`,
which writes ``batch.json`` (``cj_batch_id``, ``bos_batch_id``, …) into the run folder;
notebooks 03 and 04 (and :func:`cjlib.pipeline.run_pipeline`) read it back with
:func:`read_batch_record`. A file written by a cjlib function is sturdier than scraping a cell's
output.

Environment variables
---------------------
CJ_NOTEBOOK_PARAMETERS
    A JSON object of notebook parameters for runs outside the pipeline (``pytest --nbval-lax
    notebooks/``, JupyterLab): :func:`fill_parameters` uses its values for parameters left at
    None. The pipeline passes every parameter explicitly, so it does not depend on it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cjlib import config
from cjlib.db.models import utc_now
from cjlib.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cjlib.diagnostics import BatchInspection
    from cjlib.workflow import BatchRunResult

#: File in the run folder through which notebook 02 hands the batch id on.
BATCH_RECORD = "batch.json"
#: Environment variable with parameter values for notebooks run outside the pipeline.
NOTEBOOK_PARAMETERS_ENV = "CJ_NOTEBOOK_PARAMETERS"
#: Where notebooks run by hand create and look for run folders.
DEFAULT_RUNS_DIR = Path("reports") / "runs"


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def _parameter_overrides() -> dict[str, Any]:
    raw = config.notebook_parameters_json()
    if not raw:
        return {}
    try:
        overrides = json.loads(raw)
    except json.JSONDecodeError as err:
        raise UsageError(f"{NOTEBOOK_PARAMETERS_ENV} is not valid JSON: {err}") from None
    if not isinstance(overrides, dict):
        raise UsageError(f"{NOTEBOOK_PARAMETERS_ENV} must be a JSON object, e.g. {{...}}")
    return overrides


def fill_parameters(**values: Any) -> tuple[Any, ...]:
    """Fill notebook parameters left at None from ``CJ_NOTEBOOK_PARAMETERS``.

    Parameters
    ----------
    **values
        The notebook's parameters by name.

    Returns
    -------
    tuple
        The values in the order given; a None replaced by the environment's value of that name
        when it has one.

    Raises
    ------
    UsageError
        ``CJ_NOTEBOOK_PARAMETERS`` is not a JSON object.
    """
    overrides = _parameter_overrides()
    return tuple(overrides.get(name) if value is None else value for name, value in values.items())


# --------------------------------------------------------------------------------------------
# Run folder and batch record
# --------------------------------------------------------------------------------------------


def new_pipeline_run_dir(output_dir: str | Path, label: str) -> Path:
    """Create a fresh run folder ``<output_dir>/<UTC stamp>_<label>_pipeline`` (never reused)."""
    # Imported when called: importing cjlib.workflow loads the scoring code (scipy).
    from cjlib.provenance import fresh_run_dir

    return fresh_run_dir(Path(output_dir).resolve(), label, "pipeline")


def write_batch_record(run_dir: str | Path, result: BatchRunResult) -> Path:
    """Write ``batch.json`` into ``run_dir`` from a :class:`cjlib.workflow.BatchRunResult`.

    Notebooks 03 and 04 (and the pipeline) find the batch through this file. Written to a
    temporary file first and renamed, so a reader never sees half a record.

    Returns
    -------
    Path
        The record written.
    """
    record = {
        "cj_batch_id": result.cj_batch_id,
        "bos_batch_id": result.bos_batch_id,
        "batch_label": result.batch_label,
        "assignment_id": result.assignment_id,
        "status": result.status,
        "state": result.state,
        "artefacts_dir": str(result.run_dir) if result.run_dir else None,
        "written_at": utc_now().isoformat(),
    }
    path = Path(run_dir) / BATCH_RECORD
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_batch_record(run_dir: str | Path) -> dict[str, Any]:
    """The ``batch.json`` that notebook 02 wrote into ``run_dir``.

    Raises
    ------
    NotFoundError
        ``run_dir`` has no ``batch.json`` (notebook 02 has not run there), or it is unreadable.
    """
    path = Path(run_dir) / BATCH_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(
            f"{path} does not exist: run notebook 02_execute_eng5_batch with run_dir={run_dir} "
            "first, or pass cj_batch_id"
        ) from None
    except json.JSONDecodeError as err:
        raise NotFoundError(f"{path} is not valid JSON ({err}); re-run notebook 02") from None
    if not isinstance(record, dict) or not isinstance(record.get("cj_batch_id"), int):
        raise NotFoundError(f"{path} has no integer cj_batch_id; re-run notebook 02")
    return record


def latest_run_dir(output_dir: str | Path = DEFAULT_RUNS_DIR) -> Path:
    """The newest run folder under ``output_dir`` that holds a ``batch.json``.

    Run folders start with a UTC time stamp, so the newest sorts last by name.

    Raises
    ------
    NotFoundError
        No folder under ``output_dir`` has a ``batch.json``.
    """
    candidates = sorted(
        (p.parent for p in Path(output_dir).glob(f"*/{BATCH_RECORD}")),
        key=lambda p: p.name,
    )
    if not candidates:
        raise NotFoundError(
            f"no run folder with a {BATCH_RECORD} under {output_dir}: run notebook "
            "02_execute_eng5_batch (or `cj pipeline`) first, or pass run_dir"
        )
    return candidates[-1]


# --------------------------------------------------------------------------------------------
# Snapshot of a batch (notebook 03)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSnapshot:
    """The tables notebook 03 wrote into a run folder.

    Attributes
    ----------
    tables : mapping
        Table name (``grade_projections``, ``bt_scores``, ``comparisons``) → its rows.
    files : mapping
        Table name (``<name>_parquet`` for Parquet copies) → path written.
    """

    tables: Mapping[str, pd.DataFrame]
    files: Mapping[str, Path]


def snapshot_batch(engine: Engine, cj_batch_id: int, run_dir: str | Path) -> BatchSnapshot:
    """Write batch ``cj_batch_id``'s projections, scores and comparisons into ``run_dir``.

    In a pipeline run this is the only writer of ``grade_projections.csv``; see
    :func:`cjlib.report.snapshots.write_snapshots` for the files.

    Raises
    ------
    NotFoundError
        No batch has this id.
    """
    # Imported when called: the batch loader reads the database through the workflow code,
    # which this light module does not load at import time.
    from cjlib.report.loading import load_batch
    from cjlib.report.snapshots import snapshot_tables, write_snapshots

    frames = load_batch(engine, cj_batch_id)
    return BatchSnapshot(tables=snapshot_tables(frames), files=write_snapshots(frames, run_dir))


# --------------------------------------------------------------------------------------------
# Small tables for display
# --------------------------------------------------------------------------------------------


def format_value(value: Any, digits: int = 3) -> str:
    """One value as display text: ``–`` for missing, yes/no, ``digits`` decimals, UTC time."""
    if value is None:
        return "–"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def html_table(frame: pd.DataFrame, *, digits: int = 3, table_id: str | None = None) -> str:
    """``frame`` as an HTML table without its index, floats to ``digits`` decimals.

    Every cell and column name is HTML-escaped, so labels and ids from the data show as text,
    never as markup.
    """
    return frame.to_html(
        index=False,
        escape=True,
        render_links=False,
        na_rep="–",
        float_format=lambda x: f"{x:.{digits}f}",
        border=0,
        classes="cj-table",
        table_id=table_id,
    )


def field_table(values: Mapping[str, Any]) -> pd.DataFrame:
    """A mapping as field/value rows; nested mappings are flattened to ``key value, …``."""
    rows = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k} {format_value(v)}" for k, v in value.items())
        rows.append((key, format_value(value)))
    return pd.DataFrame(rows, columns=["field", "value"])


def files_table(paths: Mapping[str, str | Path]) -> pd.DataFrame:
    """Files written, with their size: ``table``, ``file``, ``bytes``."""
    return pd.DataFrame(
        [(name, Path(p).name, Path(p).stat().st_size) for name, p in paths.items()],
        columns=["table", "file", "bytes"],
    )


_INSPECTION_FIELDS = (
    "cj_batch_id",
    "batch_label",
    "upload_status",
    "cj_state",
    "health",
    "anchor_count",
    "non_anchor_count",
    "grade_projection_count",
    "completion_reason",
    "comparisons_agree",
    "created_at",
    "completed_at",
)


def inspection_table(inspection: BatchInspection) -> pd.DataFrame:
    """The scalar fields of a :class:`cjlib.diagnostics.BatchInspection` as field/value pairs."""
    data = inspection.to_dict()
    rows = [(k, format_value(data.get(k))) for k in _INSPECTION_FIELDS]
    counts = data.get("comparisons_from_pairs") or {}
    rows.append(("comparisons (pairs)", ", ".join(f"{k} {v}" for k, v in counts.items())))
    calls = data.get("judge_calls")
    if calls:
        summary = ", ".join(f"{k} {format_value(v)}" for k, v in calls.items())
        rows.append(("LLM judge calls", summary))
    return pd.DataFrame(rows, columns=["field", "value"])
