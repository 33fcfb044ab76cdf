"""Checks of user input against what the database can store, made before anything is written.

SQLite stores any integer up to 64 bits and any text; PostgreSQL refuses an INTEGER beyond 32
bits, a string longer than its ``VARCHAR(n)`` and a NUL byte in text. So that both behave the
same, every value is checked against the strictest of the two, with limits read from the
column types in :mod:`cjlib.db.models` (never retyped). Each failure is a one-line
:class:`~cjlib.errors.UsageError` (exit 2) naming the option and what to give instead.

The functions take plain values and return them (normalised) or raise; only
:func:`check_writable_dir` looks at the file system, and it never writes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Integer, SmallInteger, String
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql.schema import Column

from cjlib.errors import UsageError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1

ColumnLike = QueryableAttribute[Any] | Column[Any]


def _column(column: ColumnLike) -> Column[Any]:
    if isinstance(column, Column):
        return column
    found = getattr(column, "expression", None)
    if not isinstance(found, Column):
        raise TypeError(f"{column!r} is not a mapped table column")
    return found


def _column_name(column: Column[Any]) -> str:
    return f"{column.table.name}.{column.name}" if column.table is not None else column.name


def integer_range(column: ColumnLike | None = None) -> tuple[int, int]:
    """The integers ``column`` holds on every supported database (signed 64-bit without one).

    ``SmallInteger`` is 16-bit and ``Integer`` 32-bit (PostgreSQL's ``smallint`` and
    ``integer``; SQLite would take more, but then the two databases would disagree);
    ``BigInteger`` is 64-bit.

    Raises
    ------
    TypeError
        ``column`` is not an integer column.
    """
    if column is None:
        return INT64_MIN, INT64_MAX
    col_type = _column(column).type
    # BigInteger and SmallInteger subclass Integer: test the specific ones first.
    if isinstance(col_type, BigInteger):
        return INT64_MIN, INT64_MAX
    if isinstance(col_type, SmallInteger):
        return INT16_MIN, INT16_MAX
    if isinstance(col_type, Integer):
        return INT32_MIN, INT32_MAX
    raise TypeError(f"{_column_name(_column(column))} is not an integer column ({col_type})")


def column_length(column: ColumnLike) -> int | None:
    """The declared length of a ``String(n)`` column (None for unbounded text).

    Examples
    --------
    >>> from cjlib.db.models import CJBatchUpload
    >>> column_length(CJBatchUpload.assignment_id)
    100
    """
    col_type = _column(column).type
    return col_type.length if isinstance(col_type, String) else None


def check_db_integer(
    name: str, value: int, column: ColumnLike | None = None, *, minimum: int | None = None
) -> int:
    """Return ``value`` if the database can store it (and it is at least ``minimum``).

    Parameters
    ----------
    name : str
        What the user typed it as, e.g. ``"--max-comparisons"``; used in the message.
    value : int
    column : mapped attribute or Column, optional
        The column it will be stored in or compared with (e.g. ``CJBatchState.total_budget``);
        its type gives the range (:func:`integer_range`). Without it: signed 64-bit.
    minimum : int, optional
        A lower bound of the option itself (e.g. 1 for an id).

    Raises
    ------
    UsageError
        ``value`` is not an integer or is outside the range.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be a whole number; got {value!r}")
    low, high = integer_range(column)
    if minimum is not None:
        low = max(low, minimum)
    if not low <= value <= high:
        where = f" (column {_column_name(_column(column))})" if column is not None else ""
        raise UsageError(f"{name} must be between {low} and {high}{where}; got {value}")
    return value


def check_text(
    name: str, value: str, max_length: int | None = None, *, required: bool = False
) -> str:
    """Return ``value`` if both databases store it unchanged.

    Parameters
    ----------
    name : str
        What the user typed it as (``"--assignment-id"``) or where it came from
        (``"students.csv row 3"``).
    value : str
    max_length : int, optional
        Characters the column holds, usually ``column_length(Model.attr)``; None for text.
    required : bool
        Refuse an empty or whitespace-only value.

    Raises
    ------
    UsageError
        ``value`` holds a NUL character (PostgreSQL cannot store it), is longer than
        ``max_length`` characters, or is blank while ``required``.
    """
    if not isinstance(value, str):
        raise UsageError(f"{name} must be text; got {type(value).__name__}")
    if "\x00" in value:
        raise UsageError(f"{name} contains a NUL character (\\x00); remove it")
    if required and not value.strip():
        raise UsageError(f"{name} is empty; give a non-blank value")
    if max_length is not None and len(value) > max_length:
        raise UsageError(
            f"{name} is {len(value)} characters long; at most {max_length} fit, shorten it"
        )
    return value


def check_positive_finite(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a number greater than 0 and finite.

    Raises
    ------
    UsageError
        ``value`` is not a number, or is 0, negative, NaN or infinite.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{name} must be a number; got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{name} must be a finite number greater than 0; got {value}")
    return number


def _read_only_filesystem(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # statvfs is POSIX-only
        return False


def check_writable_dir(path: str | Path, name: str = "--output-dir") -> Path:
    """Return ``path`` if it is, or could be created as, a folder this process may write.

    Nothing is created: the nearest existing folder on the way must be writable. Call it
    before the first database write, so a bad output folder never leaves a committed batch
    without artefacts.

    Raises
    ------
    UsageError
        ``path`` (or a parent) exists but is not a folder, or the folder that would hold it
        is not writable (permissions or a read-only file system).
    """
    target = Path(path).expanduser()
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        what = "is" if probe == target else f"is inside {probe}, which is"
        raise UsageError(f"{name} {target} {what} not a folder; choose a folder")
    if not os.access(probe, os.W_OK | os.X_OK) or _read_only_filesystem(probe):
        raise UsageError(f"{name} {target}: folder {probe} is not writable; choose another")
    return target
