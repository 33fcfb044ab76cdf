"""Run artefacts: a fresh run folder with the execute record, request envelope and projections.

``assessment_run.execute.json`` is validated against the JSON Schema shipped as package data
(``cjlib/schemas/assessment_run.schema.json``) before it is written; an invalid record is a
bug and is never written. Every section is built from the batch's read model
(:class:`cjlib.db.queries.BatchRecord`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import pandas as pd
from sqlalchemy import Engine

from cjlib.db.models import utc_now
from cjlib.db.queries import BatchRecord, load_batch
from cjlib.provenance import git_revision, sha256_file, versions

EXECUTE_RECORD = "assessment_run.execute.json"
REQUEST_ENVELOPE = Path("requests") / "cj_assessment_request.json"
PROJECTIONS_CSV = "grade_projections.csv"
_DATASET_FILES = ("anchors.csv", "students.csv", "prompt.md", "prompt.txt")


@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema of ``assessment_run.execute.json``."""
    text = (
        resources.files("cjlib")
        .joinpath("schemas/assessment_run.schema.json")
        .read_text(encoding="utf-8")
    )
    return json.loads(text)


@cache
def _validator() -> Callable[[Mapping[str, Any]], Any]:
    # fastjsonschema compiles the schema once; jsonschema's import alone took 7–11 s here
    # (its optional format plugins), paid by every process that writes artefacts.
    return fastjsonschema.compile(load_schema())


def validate_assessment_run(record: Mapping[str, Any]) -> None:
    """Raise ``fastjsonschema.JsonSchemaValueException`` when ``record`` breaks the schema."""
    _validator()(record)


def _iso(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    return value.isoformat()


def _none_if_missing(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else value


def _int_or_none(value: Any) -> int | None:
    value = _none_if_missing(value)
    return None if value is None else int(value)


def _metadata_section(batch: BatchRecord, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    upload, meta, run = batch.upload, batch.metadata, batch.run
    return {
        "cj_batch_id": upload.id,
        "bos_batch_id": upload.bos_batch_id,
        "event_correlation_id": upload.event_correlation_id,
        "batch_label": upload.batch_label,
        "assignment_id": upload.assignment_id,
        "course_id": upload.course_id,
        "grade_scale": meta.get("grade_scale"),
        "judge": run.get("judge"),
        "judge_params": run.get("judge_params", {}),
        "seed": run.get("seed"),
        "max_comparisons": run.get("max_comparisons"),
        "status": upload.status,
        "state": batch.state.state if batch.state is not None else None,
        "completion_reason": meta.get("completion_reason"),
        "created_at": _iso(upload.created_at),
        "completed_at": _iso(upload.completed_at),
        "generated_at": utc_now().isoformat(),
        "versions": versions(),
        "git_revision": git_revision(),
        **dict(extra or {}),
    }


def _inputs_section(batch: BatchRecord, dataset: str | Path | None) -> dict[str, Any]:
    """Essay checksums and the data set's files (only its files are read, never the essays)."""
    inputs: dict[str, Any] = {
        "essays": [
            {
                "els_essay_id": row.els_essay_id,
                "is_anchor": bool(row.is_anchor),
                "text_storage_id": row.text_storage_id,
                "sha256": row.text_sha256,
            }
            for row in batch.essays.itertuples(index=False)
        ],
        "files": [],
    }
    folder = dataset or batch.run.get("dataset")
    if folder:
        folder = Path(folder)
        inputs["dataset"] = str(folder)
        inputs["files"] = [
            {"path": name, "sha256": sha256_file(folder / name)}
            for name in _DATASET_FILES
            if (folder / name).is_file()
        ]
    return inputs


def _comparisons_section(batch: BatchRecord) -> list[dict[str, Any]]:
    return [
        {
            "request_correlation_id": row.request_correlation_id,
            "essay_a_id": row.essay_a_id,
            "essay_b_id": row.essay_b_id,
            "winner": row.winner,
            "confidence": _none_if_missing(row.confidence),
            "error_code": row.error_code,
            "judge_id": row.judge_id,
            "wave": _int_or_none(row.wave),
            "submitted_at": _iso(row.submitted_at),
            "completed_at": _iso(row.completed_at),
        }
        for row in batch.comparisons.itertuples(index=False)
    ]


def _bt_fit_section(batch: BatchRecord) -> dict[str, Any]:
    meta = batch.metadata
    return {
        "reliability": meta.get("reliability"),
        "separation": meta.get("separation"),
        "alpha": meta.get("bt_alpha"),
        "engine": meta.get("bt_engine"),
        "se_method": meta.get("bt_se_method"),
        "connected": meta.get("bt_connected"),
    }


def _bt_summary(batch: BatchRecord) -> list[dict[str, Any]]:
    """Every essay's stored score, SE, rank and win/loss counts."""
    essays = batch.essays
    counts = batch.win_loss()
    scored = essays.dropna(subset=["bt_score"])
    order = scored.sort_values("bt_score", ascending=False, kind="stable")["els_essay_id"]
    rank = {essay_id: i + 1 for i, essay_id in enumerate(order)}
    return [
        {
            "els_essay_id": row.els_essay_id,
            "is_anchor": bool(row.is_anchor),
            "anchor_grade": _none_if_missing(row.anchor_grade),
            "bt_score": _none_if_missing(row.bt_score),
            "bt_se": _none_if_missing(row.bt_se),
            "comparison_count": int(counts.loc[row.els_essay_id, "n_comparisons"]),
            "wins": int(counts.loc[row.els_essay_id, "wins"]),
            "losses": int(counts.loc[row.els_essay_id, "losses"]),
            "rank": rank.get(row.els_essay_id),
        }
        for row in essays.itertuples(index=False)
    ]


def _projections_section(batch: BatchRecord) -> list[dict[str, Any]]:
    probability_columns = [c for c in batch.projections.columns if c.startswith("p_")]
    return [
        {
            "els_essay_id": row["els_essay_id"],
            "primary_grade": row["primary_grade"],
            "grade_scale": row["grade_scale"],
            "confidence_score": row["confidence_score"],
            "confidence_label": row["confidence_label"],
            "probabilities": {
                c[2:]: float(row[c]) for c in probability_columns if pd.notna(row[c])
            },
        }
        for row in batch.projections.to_dict("records")
    ]


def _manifest(run_dir: Path) -> list[dict[str, Any]]:
    return [
        {
            "path": p.relative_to(run_dir).as_posix(),
            "sha256": sha256_file(p),
            "bytes": p.stat().st_size,
        }
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != EXECUTE_RECORD
    ]


def _validation_section(batch: BatchRecord, run_dir: Path, n_projections: int) -> dict[str, Any]:
    state = batch.state
    return {
        "state_history": batch.transitions["to_state"].tolist(),
        "anchor_count": int(batch.essays["is_anchor"].sum()),
        "projection_count": n_projections,
        "projection_unavailable_reason": batch.metadata.get("projection_unavailable_reason"),
        "comparisons": {
            "total": state.total_comparisons if state else 0,
            "submitted": state.submitted_comparisons if state else 0,
            "completed": state.completed_comparisons if state else 0,
            "failed": state.failed_comparisons if state else 0,
        },
        "manifest": _manifest(run_dir),
    }


def build_assessment_run(
    batch: BatchRecord,
    run_dir: Path,
    *,
    dataset: str | Path | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the execute record of a batch from its read model and the run folder's files.

    ``dataset`` is the data set folder whose files are checksummed; default the folder the
    batch recorded in its run parameters.
    """
    projections = _projections_section(batch)
    record = {
        "schema_version": "1.0",
        "metadata": _metadata_section(batch, extra_metadata),
        "inputs": _inputs_section(batch, dataset),
        "comparisons": _comparisons_section(batch),
        "bt_fit": _bt_fit_section(batch),
        "bt_summary": _bt_summary(batch),
        "grade_projections": projections,
        "validation": _validation_section(batch, run_dir, len(projections)),
    }
    validate_assessment_run(record)
    return record


def _write_record(
    batch: BatchRecord,
    run_dir: Path,
    dataset: str | Path | None,
    extra_metadata: Mapping[str, Any] | None,
) -> Path:
    record = build_assessment_run(batch, run_dir, dataset=dataset, extra_metadata=extra_metadata)
    path = run_dir / EXECUTE_RECORD
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def write_assessment_run(
    engine: Engine,
    cj_batch_id: int,
    run_dir: str | Path,
    *,
    dataset: str | Path | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write (or refresh) ``assessment_run.execute.json`` in ``run_dir``; returns its path."""
    batch = load_batch(engine, cj_batch_id)
    return _write_record(batch, Path(run_dir), dataset, extra_metadata)


def _request_envelope(batch: BatchRecord) -> dict[str, Any]:
    upload, run = batch.upload, batch.run
    return {
        "event_type": "cj_assessment.requested.v1",
        "correlation_id": upload.event_correlation_id,
        "bos_batch_id": upload.bos_batch_id,
        "batch_label": upload.batch_label,
        "assignment_id": upload.assignment_id,
        "course_code": upload.course_code,
        "language": upload.language,
        "max_comparisons": run.get("max_comparisons"),
        "judge": {"name": run.get("judge"), "params": run.get("judge_params", {})},
        "essays_to_process": [
            {
                "els_essay_id": row.els_essay_id,
                "text_storage_id": row.text_storage_id,
                "is_anchor": bool(row.is_anchor),
            }
            for row in batch.essays.itertuples(index=False)
        ],
    }


def write_projections_csv(batch: BatchRecord, run_dir: str | Path) -> Path:
    """Write the batch's stored projections to ``grade_projections.csv`` — its only writer."""
    path = Path(run_dir) / PROJECTIONS_CSV
    batch.projections.to_csv(path, index=False)
    return path


def write_execute_artefacts(
    engine: Engine,
    cj_batch_id: int,
    run_dir: str | Path,
    *,
    dataset: str | Path | None = None,
    projections_csv: bool = True,
) -> dict[str, Path]:
    """Write the request envelope, ``grade_projections.csv`` and the execute record.

    ``projections_csv=False`` leaves the CSV to a later snapshot of the same folder (the
    pipeline's notebook 03), so a run folder never gets it twice.
    """
    run_dir = Path(run_dir)
    batch = load_batch(engine, cj_batch_id)
    written: dict[str, Path] = {}
    request_path = run_dir / REQUEST_ENVELOPE
    request_path.parent.mkdir(parents=True, exist_ok=True)
    request_path.write_text(json.dumps(_request_envelope(batch), indent=2) + "\n", encoding="utf-8")
    written["request"] = request_path
    if projections_csv:
        written["grade_projections"] = write_projections_csv(batch, run_dir)
    written["execute_record"] = _write_record(batch, run_dir, dataset, None)
    return written
