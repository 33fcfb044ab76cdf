"""Helpers for workflow tests: a small synthetic data set and registered anchors."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import text

from cjlib.datasets import generate_eng5_dataset
from cjlib.workflow import register_anchors

ASSIGNMENT = "eng5-test"
COURSE = "ENG5"


def small_dataset(root: Path, n_students: int = 24, seed: int = 7) -> Path:
    """A generated ENG5-like data set with the 12 anchors and ``n_students`` students."""
    return generate_eng5_dataset(
        root / f"eng5_{n_students}_{seed}", seed=seed, n_students=n_students
    )


def register(engine, dataset: Path, assignment: str = ASSIGNMENT) -> None:
    register_anchors(engine, assignment_id=assignment, course_id=COURSE, dataset=dataset)


def count(engine, table: str, where: str = "", **params) -> int:
    sql = f"SELECT count(*) FROM {table}" + (f" WHERE {where}" if where else "")
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def rows(engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def as_dict(value) -> dict:
    return json.loads(value) if isinstance(value, str) else (value or {})


def transitions(engine, batch_id: int) -> list[str]:
    return [
        r.to_state
        for r in rows(
            engine,
            "SELECT to_state FROM cj_batch_state_transitions WHERE batch_id = :b ORDER BY id",
            b=batch_id,
        )
    ]
