"""Run artefacts: a fresh run folder with the execute record, request envelope and projections.

``assessment_run.execute.json`` is validated against the JSON Schema shipped as package data
(``cjlib/schemas/assessment_run.schema.json``) before it is written; an invalid record is a
bug and is never written. Every section is built from the batch's read model
(:class:`cjlib.db.queries.BatchRecord`). A batch of 10⁵ comparisons has a record of 10⁵ rows:
long row lists are checked column by column (each distinct value once) and written one row
per line, so neither grows with more than a C-speed pass per row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

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


#: Row lists longer than this are checked column by column (:func:`_check_rows`).
_ROWS_CHECKED_WHOLE = 100


@cache
def _row_checks() -> dict[str, dict[str, Callable[[Any], Any]]]:
    """Top-level sections that are lists of flat rows: a validator per row property.

    Only sections whose ``items`` say no more than ``type``, ``required`` and ``properties``
    qualify, so that a row is valid exactly when it is an object with the required keys and
    each property value is valid on its own.
    """
    schema = load_schema()
    # With the schema's $id, each "#/$defs/…" reference resolves inside it; without, once
    # the whole schema has been compiled it resolved against that $id and was fetched.
    root = {key: schema[key] for key in ("$schema", "$id", "$defs") if key in schema}
    checks: dict[str, dict[str, Callable[[Any], Any]]] = {}
    for section, node in schema.get("properties", {}).items():
        items = node.get("items")
        if node.get("type") != "array" or not isinstance(items, dict):
            continue
        if set(items) - {"type", "required", "properties"} or items.get("type") != "object":
            continue
        checks[section] = {
            name: fastjsonschema.compile({**root, **definition})
            for name, definition in items.get("properties", {}).items()
        }
    return checks


def _distinct(values: list[Any]) -> list[tuple[int, Any]]:
    """(first position, value) of each distinct value; by type too (True is not 1)."""
    seen: dict[tuple[type, Any], int] = {}
    out = []
    for i, value in enumerate(values):
        try:
            key = (type(value), value)
            if key in seen:
                continue
            seen[key] = i
        except TypeError:  # unhashable (a dict of probabilities): checked every time
            pass
        out.append((i, value))
    return out


def _check_columns(
    section: str, columns: Mapping[str, list[Any]], checks: Mapping[str, Callable]
) -> None:
    """Check every value of ``columns`` (one list per row property) against its schema."""
    for name, values in columns.items():
        check = checks.get(name)
        if check is None:
            continue  # not constrained by the schema
        for i, value in _distinct(values):
            try:
                check(value)
            except fastjsonschema.JsonSchemaValueException as err:
                where = f"data.{section}[{i}].{name}"
                raise fastjsonschema.JsonSchemaValueException(
                    err.message.replace("data", where, 1), value=value, name=where,
                    definition=err.definition, rule=err.rule,
                ) from None  # fmt: skip


def _as_columns(rows: list[Any]) -> dict[str, list[Any]] | None:
    """``rows`` as one list per key, or None unless all are dicts with the first row's keys."""
    if not rows or not all(isinstance(row, dict) for row in rows):
        return None
    keys = list(rows[0])
    if any(list(row) != keys for row in rows):
        return None
    return {key: [row[key] for row in rows] for key in keys}


def _validate(record: Mapping[str, Any], columns: Mapping[str, Mapping[str, list[Any]]]) -> None:
    """Check ``record``, whose sections named in ``columns`` hold only their first row.

    Each such section's rows all have the keys of that first row and their values are in
    ``columns``: every value is checked against its property's schema (each distinct value
    once), and the record with the first row through the whole schema. The same verdict as
    checking every row, without a schema walk per row.
    """
    checks = _row_checks()
    for section, values in columns.items():
        _check_columns(section, values, checks[section])
    _validator()(record)


def validate_assessment_run(record: Mapping[str, Any]) -> None:
    """Raise ``fastjsonschema.JsonSchemaValueException`` when ``record`` breaks the schema.

    Row lists longer than :data:`_ROWS_CHECKED_WHOLE` whose rows all have the same keys are
    checked column by column (:func:`_validate`); any other list row by row.
    """
    whole = dict(record)
    columns = {}
    for section in _row_checks():
        rows = record.get(section)
        if not isinstance(rows, list) or len(rows) <= _ROWS_CHECKED_WHOLE:
            continue
        values = _as_columns(rows)
        if values is not None:
            columns[section] = values
            whole[section] = rows[:1]
    _validate(whole, columns)


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


def _iso_texts(values: pd.Series) -> list[str | None]:
    """:func:`_iso` of each value, computed once per distinct timestamp.

    A wave's pairs share one ``submitted_at`` and a bulk write's results one ``completed_at``.
    """
    texts: dict[Any, str | None] = {}
    return [texts[v] if v in texts else texts.setdefault(v, _iso(v)) for v in values.tolist()]


def _optional(values: pd.Series) -> list[Any]:
    """The values with NaN as None."""
    return [_none_if_missing(v) for v in values.tolist()]


#: Keys of a row of the record's ``comparisons``, in order.
_COMPARISON_KEYS = ("request_correlation_id", "essay_a_id", "essay_b_id", "winner", "confidence",
                    "error_code", "judge_id", "wave", "submitted_at", "completed_at")  # fmt: skip


def _comparison_columns(batch: BatchRecord) -> dict[str, list[Any]]:
    """The record's ``comparisons`` as one list per key (in :data:`_COMPARISON_KEYS` order)."""
    frame = batch.comparisons
    values = (
        frame["request_correlation_id"].tolist(),
        frame["essay_a_id"].tolist(),
        frame["essay_b_id"].tolist(),
        frame["winner"].tolist(),
        _optional(frame["confidence"]),
        frame["error_code"].tolist(),
        frame["judge_id"].tolist(),
        [_int_or_none(v) for v in frame["wave"].tolist()],
        _iso_texts(frame["submitted_at"]),
        _iso_texts(frame["completed_at"]),
    )
    return dict(zip(_COMPARISON_KEYS, values, strict=True))


def _rows(columns: Mapping[str, list[Any]], stop: int | None = None) -> list[dict[str, Any]]:
    keys = list(columns)
    return [
        dict(zip(keys, values, strict=True))
        for values in zip(*(column[:stop] for column in columns.values()), strict=True)
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
        "converged": meta.get("bt_converged"),
        "iterations": meta.get("bt_iterations"),
    }


def _bt_summary(batch: BatchRecord) -> list[dict[str, Any]]:
    """Every essay's stored score, SE, rank and win/loss counts."""
    essays = batch.essays
    counts = batch.win_loss().reindex(essays["els_essay_id"])
    scored = essays.dropna(subset=["bt_score"])
    order = scored.sort_values("bt_score", ascending=False, kind="stable")["els_essay_id"]
    rank = {essay_id: i + 1 for i, essay_id in enumerate(order)}
    columns = zip(
        essays["els_essay_id"].tolist(),
        essays["is_anchor"].tolist(),
        _optional(essays["anchor_grade"]),
        _optional(essays["bt_score"]),
        _optional(essays["bt_se"]),
        counts["n_comparisons"].tolist(),
        counts["wins"].tolist(),
        counts["losses"].tolist(),
        strict=True,
    )
    return [
        {
            "els_essay_id": essay_id,
            "is_anchor": bool(is_anchor),
            "anchor_grade": grade,
            "bt_score": score,
            "bt_se": se,
            "comparison_count": int(n),
            "wins": int(wins),
            "losses": int(losses),
            "rank": rank.get(essay_id),
        }
        for essay_id, is_anchor, grade, score, se, n, wins, losses in columns
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


def _assemble(
    batch: BatchRecord,
    run_dir: Path,
    dataset: str | Path | None,
    extra_metadata: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """The execute record with ``comparisons`` left empty, and the comparisons as columns."""
    projections = _projections_section(batch)
    record = {
        "schema_version": "1.0",
        "metadata": _metadata_section(batch, extra_metadata),
        "inputs": _inputs_section(batch, dataset),
        "comparisons": [],
        "bt_fit": _bt_fit_section(batch),
        "bt_summary": _bt_summary(batch),
        "grade_projections": projections,
        "validation": _validation_section(batch, run_dir, len(projections)),
    }
    return record, _comparison_columns(batch)


def _row_lines(columns: Mapping[str, list[Any]]) -> Iterator[str]:
    keys = list(columns)
    for values in zip(*columns.values(), strict=True):
        yield json.dumps(dict(zip(keys, values, strict=True)), default=str)


def _write_json(
    out: TextIO, record: Mapping[str, Any], columns: Mapping[str, Mapping[str, list[Any]]]
) -> None:
    """Write ``record``: sections indented, a row list one compact row per line.

    A section named in ``columns`` is written from them, row by row, whatever the record
    holds for it: the rows of a large batch are never all in memory as dicts or as text.
    """
    out.write("{")
    for index, (key, value) in enumerate(record.items()):
        out.write(f"{',' if index else ''}\n  {json.dumps(key)}: ")
        if key in columns:
            lines: Iterable[str] | None = _row_lines(columns[key])
        elif isinstance(value, list) and len(value) > _ROWS_CHECKED_WHOLE:
            lines = (json.dumps(row, default=str) for row in value)
        else:
            lines = None
            out.write(json.dumps(value, indent=2, default=str).replace("\n", "\n  "))
        if lines is not None:
            out.write("[")
            first = True
            for line in lines:
                out.write(("\n    " if first else ",\n    ") + line)
                first = False
            out.write("]" if first else "\n  ]")
    out.write("\n}\n")


def _write_record(
    batch: BatchRecord,
    run_dir: Path,
    dataset: str | Path | None,
    extra_metadata: Mapping[str, Any] | None,
) -> Path:
    record, comparisons = _assemble(batch, run_dir, dataset, extra_metadata)
    record["comparisons"] = _rows(comparisons, stop=1)
    _validate(record, {"comparisons": comparisons})
    path = run_dir / EXECUTE_RECORD
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        _write_json(out, record, {"comparisons": comparisons})
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
