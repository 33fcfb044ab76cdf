"""Bulk loading: many rows into one table inside the caller's transaction, without the ORM.

PostgreSQL gets ``COPY … FROM STDIN`` through psycopg on the raw DBAPI connection of the
session's own transaction (so a rollback removes the rows with everything else); SQLite gets
one ``executemany``. Both are one to two orders of magnitude faster than adding ORM objects
row by row, which matters for imports of a national session (10⁶ decisions).

Values bypass SQLAlchemy's type processing, so callers pass them in the form the column
stores: text, numbers, booleans, None, JSON already serialised with :func:`json.dumps`, and
timestamps formatted by :func:`timestamp_text` / :func:`timestamp_texts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Table
from sqlalchemy.orm import Session

__all__ = ["insert_rows", "timestamp_text", "timestamp_texts"]


def timestamp_text(dialect: str, value: datetime) -> str:
    """``value`` (timezone-aware) as the text a bulk insert writes into a UTC timestamp column.

    PostgreSQL ``timestamptz`` takes ISO 8601 with the offset; SQLite stores naive UTC as
    SQLAlchemy writes it (``YYYY-MM-DD HH:MM:SS.ffffff``), which the ``cj_batch_health`` view's
    ``julianday`` and :class:`cjlib.db.models.UTCDateTime` both read.
    """
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
    value = value.astimezone(UTC)
    if dialect == "sqlite":
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value.isoformat()


def timestamp_texts(dialect: str, values: pd.Series) -> np.ndarray:
    """Vectorised :func:`timestamp_text` for a timezone-aware Series; NaT becomes None."""
    utc = pd.to_datetime(values, utc=True).dt.tz_localize(None).to_numpy("datetime64[us]")
    text = np.datetime_as_string(utc, unit="us")
    if dialect == "sqlite":
        text = np.strings.replace(text, "T", " ")
    else:
        text = np.strings.add(text, "+00:00")
    out = text.astype(object)
    out[np.isnat(utc)] = None
    return out


def insert_rows(
    session: Session,
    table: Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` in ``session``'s transaction.

    Pending ORM changes are flushed first, so rows may refer to objects added just before.

    Returns
    -------
    int
        Rows written.
    """
    session.flush()
    connection = session.connection()
    driver = connection.connection.driver_connection
    names = ", ".join(columns)
    written = 0
    if connection.dialect.name == "postgresql":
        with (
            driver.cursor() as cursor,
            cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
                written += 1
        return written
    marks = ", ".join("?" for _ in columns)
    counted = _counting(rows)
    cursor = driver.cursor()
    try:
        cursor.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({marks})", counted)
    finally:
        cursor.close()
    return counted.count


class _counting:
    """An iterator over ``rows`` that counts what it yields (executemany takes iterators)."""

    def __init__(self, rows: Iterable[Sequence[object]]):
        self._rows = iter(rows)
        self.count = 0

    def __iter__(self) -> _counting:
        return self

    def __next__(self) -> Sequence[object]:
        row = next(self._rows)
        self.count += 1
        return row
