"""Run artefacts: a fresh run folder with the execute record, request envelope and projections.

``assessment_run.execute.json`` is validated against the JSON Schema shipped in
``cjlib/schemas/assessment_run.schema.json`` before it is written; an invalid record is a bug
and is never written.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import re
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from cjlib import __version__
from cjlib.db import session_scope
from cjlib.db.models import (
    CJBatchState,
    CJBatchStateTransition,
    CJBatchUpload,
    CJComparisonPair,
    CJProcessedEssay,
    GradeProjection,
    utc_now,
)
from cjlib.errors import NotFoundError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "assessment_run.schema.json"
EXECUTE_RECORD = "assessment_run.execute.json"
REQUEST_ENVELOPE = Path("requests") / "cj_assessment_request.json"
PROJECTIONS_CSV = "grade_projections.csv"
_DATASET_FILES = ("anchors.csv", "students.csv", "prompt.md", "prompt.txt")
_VERSIONED = ("numpy", "pandas", "scipy", "choix", "SQLAlchemy", "alembic")


@cache
def load_schema() -> dict[str, Any]:
    """The JSON Schema of ``assessment_run.execute.json``."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_assessment_run(record: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``record`` does not match the schema."""
    import jsonschema  # imported lazily: its optional format plugins take seconds to load

    jsonschema.validate(record, load_schema())


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_revision() -> str | None:
    """The git commit of the cjlib checkout that runs, or None when it is not a git checkout.

    Asked in the package's own folder, not the working directory, so a run started elsewhere
    (``cd /tmp && cj pipeline``) still records the code it ran.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev or None


def versions() -> dict[str, str]:
    """Versions of Python, cjlib and the libraries that shape the numbers."""
    found = {"python": platform.python_version(), "cjlib": __version__}
    for name in _VERSIONED:
        try:
            found[name.lower()] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def fresh_run_dir(output_dir: str | Path, label: str, suffix: str) -> Path:
    """Create ``<output_dir>/<UTC stamp>_<label>_<suffix>`` (``_2``, ``_3``… if taken).

    Never reuses an existing folder, so an earlier run's files are never overwritten.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "batch"
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    base = Path(output_dir) / f"{stamp}_{safe}_{suffix}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}_{n}")


def new_run_dir(output_dir: str | Path, batch_label: str, cj_batch_id: int) -> Path:
    """A fresh run folder for one batch's artefacts (see :func:`fresh_run_dir`)."""
    return fresh_run_dir(output_dir, batch_label, f"batch{cj_batch_id}")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _batch_rows(engine: Engine, batch_id: int) -> dict[str, Any]:
    with session_scope(engine) as session:
        upload = session.get(CJBatchUpload, batch_id)
        if upload is None:
            raise NotFoundError(f"no CJ batch with id {batch_id}")
        state = session.get(CJBatchState, batch_id)
        essays = session.scalars(
            select(CJProcessedEssay)
            .where(CJProcessedEssay.cj_batch_id == batch_id)
            .order_by(CJProcessedEssay.els_essay_id)
        ).all()
        pairs = session.scalars(
            select(CJComparisonPair)
            .where(CJComparisonPair.cj_batch_id == batch_id)
            .order_by(CJComparisonPair.id)
        ).all()
        projections = session.scalars(
            select(GradeProjection)
            .where(GradeProjection.cj_batch_id == batch_id)
            .order_by(GradeProjection.els_essay_id)
        ).all()
        transitions = session.scalars(
            select(CJBatchStateTransition)
            .where(CJBatchStateTransition.batch_id == batch_id)
            .order_by(CJBatchStateTransition.id)
        ).all()
        return {
            "upload": upload,
            "state": state,
            "essays": essays,
            "pairs": pairs,
            "projections": projections,
            "transitions": transitions,
        }


def _bt_summary(essays: list, pairs: list) -> list[dict[str, Any]]:
    wins: dict[str, int] = {}
    losses: dict[str, int] = {}
    for p in pairs:
        if p.winner is None or p.winner.value == "error":
            continue
        w, lo = (
            (p.essay_a_els_id, p.essay_b_els_id)
            if p.winner.value == "essay_a"
            else (p.essay_b_els_id, p.essay_a_els_id)
        )
        wins[w] = wins.get(w, 0) + 1
        losses[lo] = losses.get(lo, 0) + 1
    scored = [e for e in essays if e.current_bt_score is not None]
    order = sorted(scored, key=lambda e: -e.current_bt_score)
    rank = {e.els_essay_id: i + 1 for i, e in enumerate(order)}
    return [
        {
            "els_essay_id": e.els_essay_id,
            "is_anchor": bool(e.is_anchor),
            "anchor_grade": (e.processing_metadata or {}).get("anchor_grade"),
            "bt_score": e.current_bt_score,
            "bt_se": e.current_bt_se,
            "comparison_count": wins.get(e.els_essay_id, 0) + losses.get(e.els_essay_id, 0),
            "wins": wins.get(e.els_essay_id, 0),
            "losses": losses.get(e.els_essay_id, 0),
            "rank": rank.get(e.els_essay_id),
        }
        for e in essays
    ]


def build_assessment_run(
    engine: Engine,
    cj_batch_id: int,
    run_dir: Path,
    *,
    dataset: str | Path | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the execute record of a batch from the database and the run folder's files.

    ``dataset`` is the data set folder whose files are checksummed; default the folder the
    batch recorded in its run parameters. Only its files are read, never the essays.
    """
    rows = _batch_rows(engine, cj_batch_id)
    upload, state = rows["upload"], rows["state"]
    meta = upload.processing_metadata or {}
    run = meta.get("run", {})
    inputs: dict[str, Any] = {
        "essays": [
            {
                "els_essay_id": e.els_essay_id,
                "is_anchor": bool(e.is_anchor),
                "text_storage_id": e.text_storage_id,
                "sha256": hashlib.sha256(e.assessment_input_text.encode("utf-8")).hexdigest(),
            }
            for e in rows["essays"]
        ],
        "files": [],
    }
    folder = dataset or run.get("dataset")
    if folder:
        folder = Path(folder)
        inputs["dataset"] = str(folder)
        inputs["files"] = [
            {"path": name, "sha256": sha256_file(folder / name)}
            for name in _DATASET_FILES
            if (folder / name).is_file()
        ]
    comparisons = [
        {
            "request_correlation_id": p.request_correlation_id,
            "essay_a_id": p.essay_a_els_id,
            "essay_b_id": p.essay_b_els_id,
            "winner": p.winner.value if p.winner is not None else None,
            "confidence": p.confidence,
            "error_code": p.error_code,
            "judge_id": p.judge_id,
            "wave": (p.processing_metadata or {}).get("wave"),
            "submitted_at": _iso(p.submitted_at),
            "completed_at": _iso(p.completed_at),
        }
        for p in rows["pairs"]
    ]
    projections = [
        {
            "els_essay_id": g.els_essay_id,
            "primary_grade": g.primary_grade,
            "grade_scale": g.grade_scale,
            "confidence_score": g.confidence_score,
            "confidence_label": g.confidence_label,
            "probabilities": g.probabilities,
        }
        for g in rows["projections"]
    ]
    manifest = [
        {
            "path": p.relative_to(run_dir).as_posix(),
            "sha256": sha256_file(p),
            "bytes": p.stat().st_size,
        }
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != EXECUTE_RECORD
    ]
    record = {
        "schema_version": "1.0",
        "metadata": {
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
            "status": upload.status.value,
            "state": state.state.value,
            "completion_reason": meta.get("completion_reason"),
            "created_at": _iso(upload.created_at),
            "completed_at": _iso(upload.completed_at),
            "generated_at": utc_now().isoformat(),
            "versions": versions(),
            "git_revision": git_revision(),
            **dict(extra_metadata or {}),
        },
        "inputs": inputs,
        "comparisons": comparisons,
        "bt_fit": {
            "reliability": meta.get("reliability"),
            "separation": meta.get("separation"),
            "alpha": meta.get("bt_alpha"),
            "engine": meta.get("bt_engine"),
            "se_method": meta.get("bt_se_method"),
            "connected": meta.get("bt_connected"),
        },
        "bt_summary": _bt_summary(rows["essays"], rows["pairs"]),
        "grade_projections": projections,
        "validation": {
            "state_history": [t.to_state.value for t in rows["transitions"]],
            "anchor_count": sum(1 for e in rows["essays"] if e.is_anchor),
            "projection_count": len(projections),
            "projection_unavailable_reason": meta.get("projection_unavailable_reason"),
            "comparisons": {
                "total": state.total_comparisons,
                "submitted": state.submitted_comparisons,
                "completed": state.completed_comparisons,
                "failed": state.failed_comparisons,
            },
            "manifest": manifest,
        },
    }
    validate_assessment_run(record)
    return record


def write_assessment_run(
    engine: Engine,
    cj_batch_id: int,
    run_dir: str | Path,
    *,
    dataset: str | Path | None = None,
    extra_metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write (or refresh) ``assessment_run.execute.json`` in ``run_dir``; returns its path."""
    run_dir = Path(run_dir)
    record = build_assessment_run(
        engine, cj_batch_id, run_dir, dataset=dataset, extra_metadata=extra_metadata
    )
    path = run_dir / EXECUTE_RECORD
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def projections_frame(engine: Engine, cj_batch_id: int) -> pd.DataFrame:
    """The batch's ``grade_projections`` rows, one probability column per grade."""
    with session_scope(engine) as session:
        rows = session.scalars(
            select(GradeProjection)
            .where(GradeProjection.cj_batch_id == cj_batch_id)
            .order_by(GradeProjection.els_essay_id)
        ).all()
        records = [
            {
                "els_essay_id": g.els_essay_id,
                "cj_batch_id": g.cj_batch_id,
                "primary_grade": g.primary_grade,
                "grade_scale": g.grade_scale,
                "confidence_score": g.confidence_score,
                "confidence_label": g.confidence_label,
                **{f"p_{k}": v for k, v in (g.probabilities or {}).items()},
            }
            for g in rows
        ]
    return pd.DataFrame.from_records(records)


def write_execute_artefacts(
    engine: Engine, cj_batch_id: int, run_dir: str | Path, *, dataset: str | Path | None = None
) -> dict[str, Path]:
    """Write the request envelope, ``grade_projections.csv`` and the execute record."""
    run_dir = Path(run_dir)
    rows = _batch_rows(engine, cj_batch_id)
    upload = rows["upload"]
    run = (upload.processing_metadata or {}).get("run", {})
    envelope = {
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
                "els_essay_id": e.els_essay_id,
                "text_storage_id": e.text_storage_id,
                "is_anchor": bool(e.is_anchor),
            }
            for e in rows["essays"]
        ],
    }
    request_path = run_dir / REQUEST_ENVELOPE
    request_path.parent.mkdir(parents=True, exist_ok=True)
    request_path.write_text(json.dumps(envelope, indent=2) + "\n", encoding="utf-8")
    csv_path = run_dir / PROJECTIONS_CSV
    projections_frame(engine, cj_batch_id).to_csv(csv_path, index=False)
    record_path = write_assessment_run(engine, cj_batch_id, run_dir, dataset=dataset)
    return {"execute_record": record_path, "request": request_path, "grade_projections": csv_path}
