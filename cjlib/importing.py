"""Human comparative-judgement decision exports read into one canonical table of decisions.

Decision files from No More Marking, RM Compare-like tools, R scripts and LLM-judging tools
record the same facts under different column names. :func:`read_judgements` recognises each
layout of :data:`LAYOUTS` by its column names — case, spaces, dots, underscores and other
punctuation are ignored, so ``Candidate Chosen``, ``candidate_chosen`` and
``Candidate.Chosen`` are one name — and returns one row per decision with the columns of
:data:`CANONICAL_COLUMNS`. Any other layout is read with a ``columns`` mapping
``{canonical: source}``.

Positions: when the file says where the items were shown (``left``/``right`` columns with a
``choice``, an ``isLeft`` flag of the chosen item, ``ID1``/``ID2`` of an LLM prompt), the
item shown left / first / as A is ``essay_a_id``. Without such information the table has no
``essay_a_id``/``essay_b_id`` columns.

Pure module: files in, DataFrames out, no database. Errors a user can fix raise
:class:`~cjlib.errors.JudgementFileError` naming the file, the first offending rows
(numbered as a spreadsheet shows them: the header is row 1) and what to change.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

import pandas as pd

from cjlib.errors import JudgementFileError

__all__ = [
    "CANONICAL_COLUMNS",
    "LAYOUTS",
    "MAPPABLE_COLUMNS",
    "JudgementFile",
    "Layout",
    "normalise_column_name",
    "read_anchor_grades",
    "read_judgement_file",
    "read_judgements",
]

log = logging.getLogger(__name__)

#: Columns of the table :func:`read_judgements` returns (the last seven only when known).
CANONICAL_COLUMNS = (
    "winner_id",
    "loser_id",
    "essay_a_id",
    "essay_b_id",
    "judge_id",
    "decision_id",
    "seconds_taken",
    "decided_at",
    "task",
)
#: What a ``columns`` mapping (``--column canonical=source``) may name: the canonical columns
#: plus the source facts they are derived from. ``choice`` is the side of the chosen item
#: (``left``/``right``, ``A``/``B``); ``is_left`` is true when the chosen item was shown left;
#: ``excluded`` marks rows to skip; ``milliseconds_taken`` is a time in ms.
MAPPABLE_COLUMNS = (*CANONICAL_COLUMNS, "choice", "is_left", "excluded", "milliseconds_taken")

#: File suffixes read as Excel workbooks (the first sheet).
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
#: File suffixes read as tab-separated text whatever their first line looks like.
TSV_SUFFIXES = (".tsv", ".tab")

_MAX_ROWS_LISTED = 5
_SIDE_A = frozenset({"left", "l", "a", "essay_a", "essaya", "first", "1"})
_SIDE_B = frozenset({"right", "r", "b", "essay_b", "essayb", "second", "2"})
_TRUE = frozenset({"true", "t", "yes", "y", "1", "1.0", "x"})
_FALSE = frozenset({"false", "f", "no", "n", "0", "0.0", ""})


def normalise_column_name(name: object) -> str:
    """A column name reduced to lower-case letters and digits (``Time.Taken`` → ``timetaken``).

    Two names that differ only in case, spaces, dots, underscores, hyphens or brackets are
    the same column to :func:`read_judgements`.
    """
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


@dataclass(frozen=True)
class Layout:
    """A decision-file layout: which normalised column names carry which facts.

    Attributes
    ----------
    name : str
        What ``format=`` (``--format``) calls it.
    description : str
        The files it comes from, for documentation and messages.
    required : mapping
        Fact (a name of :data:`MAPPABLE_COLUMNS`) → normalised column names that may carry
        it, in order of preference. Every fact must be found for the layout to match.
    optional : mapping
        Facts read with a layout-specific meaning before the common aliases, e.g. No More
        Marking's ``timeTaken`` is in milliseconds.
    """

    name: str
    description: str
    required: Mapping[str, tuple[str, ...]]
    optional: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_LEFT = ("left", "leftid", "leftitem", "itemleft", "essayaid", "essaya", "ida", "itema", "a")
_RIGHT = ("right", "rightid", "rightitem", "itemright", "essaybid", "essayb", "idb", "itemb", "b")

#: The layouts ``format="auto"`` recognises, tried in this order (the first that matches wins).
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "nmm",
        "No More Marking decisions export: id, timeTaken (ms), createdAt, judgeId, chosen, "
        "notChosen, task, optionally judge, isLeft, exclude, chosenId/notChosenId",
        {"winner_id": ("chosenid", "chosen"), "loser_id": ("notchosenid", "notchosen")},
        {"milliseconds_taken": ("timetaken",)},
    ),
    Layout(
        "candidate",
        "judge, candidate_chosen, candidate_not_chosen (also 'Candidate Chosen' and R-style "
        "Candidate.Chosen, Candidate.Not.Chosen, Time.Taken in seconds)",
        {"winner_id": ("candidatechosen",), "loser_id": ("candidatenotchosen",)},
    ),
    Layout("won_lost", "won, lost", {"winner_id": ("won",), "loser_id": ("lost",)}),
    Layout(
        "winner_loser",
        "winner, loser (or winner_id, loser_id)",
        {"winner_id": ("winnerid", "winner"), "loser_id": ("loserid", "loser")},
    ),
    Layout(
        "id1_id2",
        "LLM-judging results: ID1, ID2, better_id (ID1 is the item shown first, position A)",
        {"essay_a_id": ("id1",), "essay_b_id": ("id2",), "winner_id": ("betterid", "better")},
    ),
    Layout(
        "left_right",
        "left, right and choice = left/right or A/B (also A, B, choice; the left/A item is "
        "position A)",
        {"essay_a_id": _LEFT, "essay_b_id": _RIGHT, "choice": ("choice", "chosenside", "side")},
    ),
    Layout(
        "cjlib",
        "cjlib's own comparisons: essay_a_id, essay_b_id, winner = essay_a/essay_b",
        {
            "essay_a_id": ("essayaid", "essaya"),
            "essay_b_id": ("essaybid", "essayb"),
            "choice": ("winner",),
        },
    ),
)
_LAYOUTS_BY_NAME = {layout.name: layout for layout in LAYOUTS}

#: Aliases of the facts every layout may carry, in order of preference.
_COMMON_ALIASES: Mapping[str, tuple[str, ...]] = {
    "judge_id": (
        "judgeid", "judge", "judgeemail", "judgename", "assessorid", "assessor", "raterid",
        "rater", "markerid", "marker",
    ),
    "decision_id": (
        "decisionid", "id", "judgementid", "judgmentid", "comparisonid", "decision",
    ),
    "milliseconds_taken": ("timetakenms", "millisecondstaken", "milliseconds", "durationms"),
    "seconds_taken": (
        "secondstaken", "timetakens", "timetakenseconds", "timetaken", "seconds", "durations",
        "duration",
    ),
    "decided_at": (
        "decidedat", "createdat", "completedat", "timestamp", "datetime", "date", "submittedat",
    ),
    "task": ("task", "taskid", "taskname"),
    "essay_a_id": ("essayaid", "essaya", "left", "leftid", "leftitem"),
    "essay_b_id": ("essaybid", "essayb", "right", "rightid", "rightitem"),
    "excluded": ("exclude", "excluded", "isexcluded"),
    "is_left": ("isleft", "chosenisleft", "chosenleft", "winnerisleft"),
    "choice": ("choice", "chosenside", "winnerside", "side"),
}  # fmt: skip


@dataclass(frozen=True)
class JudgementFile:
    """A decision file as read by :func:`read_judgement_file`.

    Attributes
    ----------
    path : Path
        The file.
    layout : str
        Name of the layout of :data:`LAYOUTS` that matched, or ``"mapped"`` when the
        ``columns`` mapping alone said where the decisions are.
    columns : mapping
        Fact → source column actually used.
    decisions : pandas.DataFrame
        One row per imported decision, indexed by its row number in the file (header = row
        1), with :data:`CANONICAL_COLUMNS` that are known.
    rows_read : int
        Data rows in the file (blank rows not counted).
    excluded : int
        Rows of the selected task marked excluded, skipped.
    duplicates : int
        Rows repeating an earlier row's ``decision_id``, skipped (imported once).
    other_tasks : int
        Rows belonging to tasks other than ``task``, skipped.
    task : str or None
        The task imported (None when the file names no task).
    tasks : tuple of str
        Every task the file holds.
    """

    path: Path
    layout: str
    columns: Mapping[str, str]
    decisions: pd.DataFrame
    rows_read: int
    excluded: int
    duplicates: int
    other_tasks: int
    task: str | None
    tasks: tuple[str, ...]

    @property
    def positions_known(self) -> bool:
        """Whether the file says which item was shown in position A (left/first)."""
        return "essay_a_id" in self.decisions.columns

    def counts(self) -> dict[str, int]:
        """Rows read, decisions imported, excluded rows, duplicate ids, other tasks' rows."""
        return {
            "rows_read": self.rows_read,
            "decisions": len(self.decisions),
            "excluded": self.excluded,
            "duplicates": self.duplicates,
            "other_tasks": self.other_tasks,
        }


# --------------------------------------------------------------------------------------------
# Reading the raw table
# --------------------------------------------------------------------------------------------


def _fail(path: Path, message: str) -> JudgementFileError:
    return JudgementFileError(f"{path}: {message}")


def _rows_text(rows: Sequence[int]) -> str:
    if len(rows) == 1:
        return f"row {int(rows[0])}"
    shown = ", ".join(str(int(r)) for r in rows[:_MAX_ROWS_LISTED])
    more = len(rows) - _MAX_ROWS_LISTED
    return f"rows {shown}" + (f" (and {more} more)" if more > 0 else "")


def _bad_rows(path: Path, rows: Sequence[int], problem: str, fix: str) -> JudgementFileError:
    return _fail(path, f"{problem} in {_rows_text(list(rows))}; {fix}")


def _decode(path: Path, raw: bytes) -> str:
    """The file's text: UTF-8 (with or without BOM) or UTF-16 with a BOM (Excel's 'Unicode')."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise _fail(
            path,
            f"not UTF-8 text (byte 0x{raw[err.start]:02x} on line {line} cannot be decoded); "
            "re-save it as UTF-8 (Excel: 'CSV UTF-8'), or as .xlsx",
        ) from None


def _delimiter(path: Path, text: str) -> str:
    if path.suffix.lower() in TSV_SUFFIXES:
        return "\t"
    header = text.split("\n", 1)[0]
    counts = {sep: header.count(sep) for sep in ("\t", ",", ";")}
    best = max(counts, key=lambda sep: counts[sep])
    return best if counts[best] else ","


def _read_table(path: Path) -> pd.DataFrame:
    """Every cell as text (empty string for an empty cell), blank rows kept for numbering."""
    if not path.is_file():
        raise _fail(path, "no such file; check the path")
    suffix = path.suffix.lower()
    if suffix == ".xls":
        raise _fail(path, "old Excel .xls files are not read; save it as .xlsx or CSV UTF-8")
    try:
        if suffix in EXCEL_SUFFIXES:
            try:
                frame = pd.read_excel(
                    path, sheet_name=0, dtype=object, na_filter=False, engine="openpyxl"
                )
                # Cells hold numbers and dates as such; ids and sides are compared as text.
                frame = frame.map(lambda v: "" if v is None else str(v))
            except (ValueError, KeyError, OSError) as err:
                raise _fail(
                    path, f"cannot be read as an Excel workbook ({err}); re-save it as .xlsx"
                ) from None
        else:
            text = _decode(path, path.read_bytes())
            if not text.strip():
                raise _fail(path, "is empty; export the decisions with a header row")
            frame = pd.read_csv(
                StringIO(text),
                sep=_delimiter(path, text),
                # Plain object columns: pandas' python-backed string dtype parses and
                # compares 10⁶ cells about 1.5 times slower.
                dtype=object,
                na_filter=False,
                skip_blank_lines=False,
                engine="c",
            )
    except pd.errors.ParserError as err:
        raise _fail(
            path, f"is not a well-formed table ({str(err).strip()}); check quotes and delimiters"
        ) from None
    except pd.errors.EmptyDataError:
        raise _fail(path, "is empty; export the decisions with a header row") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    # Row numbers as a spreadsheet shows them: header = 1, first data row = 2.
    frame.index = pd.RangeIndex(2, len(frame) + 2, name="row")
    return frame


_EDGE_SPACE = re.compile(r"\s\x00|\x00\s")


def _strip(values: pd.Series) -> pd.Series:
    """``values`` without surrounding whitespace; a no-op pass when no cell has any."""
    # One regex scan over the joined column is ~10 times cheaper than stripping 10⁶ cells.
    if _EDGE_SPACE.search("\x00" + "\x00".join(values.tolist()) + "\x00"):
        return values.str.strip()
    return values


def _cleaned(frame: pd.DataFrame, used: Sequence[str]) -> pd.DataFrame:
    """The ``used`` columns stripped of surrounding whitespace, without fully blank rows.

    Each column is stripped once (the costly step at 10⁶ rows); a row counts as blank when
    every cell of the file, used or not, is empty.
    """
    out = pd.DataFrame({column: _strip(frame[column]) for column in used}, index=frame.index)
    maybe_blank = out.eq("").all(axis=1).to_numpy()
    if maybe_blank.any():
        rest = frame.loc[maybe_blank].astype(str)
        maybe_blank[maybe_blank] = rest.apply(lambda c: c.str.strip() == "").all(axis=1)
    return out.loc[~maybe_blank]


# --------------------------------------------------------------------------------------------
# Which column carries which fact
# --------------------------------------------------------------------------------------------


def _by_normalised_name(frame: pd.DataFrame) -> dict[str, str]:
    names: dict[str, str] = {}
    for column in frame.columns:
        names.setdefault(normalise_column_name(column), column)
    return names


def _mapping_hint() -> str:
    return (
        "map them with --column canonical=source (columns={canonical: source} in Python), "
        "e.g. --column winner_id=Chosen --column loser_id=Other; canonical names: "
        + ", ".join(MAPPABLE_COLUMNS)
    )


def _user_mapping(path: Path, frame: pd.DataFrame, columns: Mapping[str, str]) -> dict[str, str]:
    names = _by_normalised_name(frame)
    mapped: dict[str, str] = {}
    for fact, source in columns.items():
        if fact not in MAPPABLE_COLUMNS:
            raise _fail(
                path,
                f"--column {fact}=… names no canonical column; use one of "
                + ", ".join(MAPPABLE_COLUMNS),
            )
        if source in frame.columns:
            mapped[fact] = source
        elif normalise_column_name(source) in names:
            mapped[fact] = names[normalise_column_name(source)]
        else:
            raise _fail(
                path,
                f"--column {fact}={source}: the file has no column {source!r}; found: "
                + ", ".join(map(str, frame.columns)),
            )
    return mapped


def _match(names: Mapping[str, str], aliases: Mapping[str, tuple[str, ...]], used: set[str]):
    found: dict[str, str] = {}
    for fact, candidates in aliases.items():
        for alias in candidates:
            column = names.get(alias)
            if column is not None and column not in used:
                found[fact] = column
                used.add(column)
                break
    return found


def _identifies_decisions(facts: Mapping[str, str]) -> bool:
    if "winner_id" in facts and "loser_id" in facts:
        return True
    has_positions = "essay_a_id" in facts and "essay_b_id" in facts
    return has_positions and ("winner_id" in facts or "choice" in facts or "is_left" in facts)


def _resolve_columns(
    path: Path, frame: pd.DataFrame, format: str, columns: Mapping[str, str]
) -> tuple[str, dict[str, str]]:
    """The layout name and fact → source column, mapping first, then layout, then aliases."""
    names = _by_normalised_name(frame)
    facts = _user_mapping(path, frame, columns)
    used = set(facts.values())
    if format == "auto":
        candidates = LAYOUTS
    elif format in _LAYOUTS_BY_NAME:
        candidates = (_LAYOUTS_BY_NAME[format],)
    else:
        raise _fail(
            path,
            f"unknown format {format!r}; use auto or one of " + ", ".join(_LAYOUTS_BY_NAME),
        )
    layout_name = "mapped"
    if format == "auto" and _identifies_decisions(facts):
        # The mapping alone says where the decisions are; a layout's meanings (such as
        # No More Marking's milliseconds) must not creep in.
        candidates = ()
    for layout in candidates:
        required = {f: a for f, a in layout.required.items() if f not in facts}
        found = _match(names, required, set(used))
        if len(found) == len(required):
            facts.update(found)
            used.update(found.values())
            facts.update(_match(names, layout.optional, used))
            layout_name = layout.name
            break
        if format != "auto":
            missing = sorted(set(required) - set(found))
            raise _fail(
                path,
                f"format {format} needs columns for {', '.join(missing)} and none was found "
                f"(found: {', '.join(map(str, frame.columns))}); {_mapping_hint()}",
            )
    # A side column ("choice") found for one layout is not also a decision's winner.
    optional = {f: a for f, a in _COMMON_ALIASES.items() if f not in facts}
    facts.update(_match(names, optional, used))
    if not _identifies_decisions(facts):
        raise _fail(
            path,
            "no recognisable decision columns (found: "
            + ", ".join(map(str, frame.columns))
            + f"); {_mapping_hint()}",
        )
    return layout_name, facts


# --------------------------------------------------------------------------------------------
# Facts → canonical columns
# --------------------------------------------------------------------------------------------


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    # Columns are stripped once by _cleaned.
    return frame[column]


def _flag(path: Path, values: pd.Series, column: str) -> pd.Series:
    lowered = values.str.lower()
    known = lowered.isin(_TRUE | _FALSE)
    if not known.all():
        raise _bad_rows(
            path,
            values.index[~known],
            f"{column} is neither true nor false ({values[~known].iloc[0]!r})",
            f"write true/false, yes/no or 1/0 in {column}",
        )
    return lowered.isin(_TRUE)


def _select_task(
    path: Path, frame: pd.DataFrame, facts: Mapping[str, str], task: str | None
) -> tuple[pd.DataFrame, str | None, tuple[str, ...], int]:
    if "task" not in facts:
        if task is not None:
            raise _fail(path, f"--task {task} given but the file has no task column; drop --task")
        return frame, None, (), 0
    values = _text(frame, facts["task"])
    counts = values[values != ""].value_counts(sort=False)
    tasks = tuple(sorted(counts.index.astype(str)))
    if task is None:
        if len(tasks) > 1:
            listed = ", ".join(f"{t} ({counts[t]} rows)" for t in tasks)
            raise _fail(path, f"holds {len(tasks)} tasks: {listed}; choose one with --task")
        return frame, (tasks[0] if tasks else None), tasks, 0
    if task not in counts.index:
        raise _fail(path, f"has no task {task!r}; its tasks are: {', '.join(tasks) or '(none)'}")
    keep = (values == task).to_numpy()
    return frame.loc[keep], task, tasks, int((~keep).sum())


def _side_is_a(path: Path, values: pd.Series, column: str) -> pd.Series:
    """True where ``column`` names position A (left/A/first), False for B; errors otherwise."""
    lowered = values.str.lower().str.replace(" ", "", regex=False)
    is_a, is_b = lowered.isin(_SIDE_A), lowered.isin(_SIDE_B)
    bad = ~(is_a | is_b)
    if bad.any():
        shown = values[bad].iloc[0]
        problem = f"empty {column}" if shown == "" else f"{column} {shown!r} is not a side"
        raise _bad_rows(path, values.index[bad], problem, f"write left/right or A/B in {column}")
    return is_a


def _chosen_side(path: Path, frame: pd.DataFrame, facts: Mapping[str, str]) -> pd.Series | None:
    """Whether the chosen item was in position A, from ``is_left`` or ``choice``.

    None when neither column exists or the column is empty throughout (positions unknown);
    a partly empty column is an error, since half-known positions would bias the A share.
    """
    for fact in ("is_left", "choice"):
        if fact not in facts:
            continue
        column = facts[fact]
        values = _text(frame, column)
        if (values == "").all():
            return None
        if (values == "").any():
            raise _bad_rows(
                path,
                values.index[values == ""],
                f"empty {column}",
                f"fill in {column} on every row, or remove the column",
            )
        if fact == "is_left":
            return _flag(path, values, column)
        return _side_is_a(path, values, column)
    return None


def _require_ids(path: Path, values: pd.Series, what: str, column: str) -> None:
    empty = values == ""
    if empty.any():
        raise _bad_rows(
            path,
            values.index[empty],
            f"empty {what} ({column})",
            "fill in the essay id or mark the row excluded",
        )


def _decisions(path: Path, frame: pd.DataFrame, facts: Mapping[str, str]) -> pd.DataFrame:
    """winner_id, loser_id and, when the file says, essay_a_id / essay_b_id."""
    out = pd.DataFrame(index=frame.index)
    if "winner_id" in facts and "loser_id" in facts:
        winner, loser = _text(frame, facts["winner_id"]), _text(frame, facts["loser_id"])
        _require_ids(path, winner, "winner", facts["winner_id"])
        _require_ids(path, loser, "loser", facts["loser_id"])
        out["winner_id"], out["loser_id"] = winner, loser
        if "essay_a_id" in facts and "essay_b_id" in facts:
            a, b = _text(frame, facts["essay_a_id"]), _text(frame, facts["essay_b_id"])
            consistent = ((a == winner) & (b == loser)) | ((a == loser) & (b == winner))
            if not consistent.all():
                raise _bad_rows(
                    path,
                    frame.index[~consistent.to_numpy()],
                    "the winner and loser are not the two items shown",
                    f"check {facts['essay_a_id']} and {facts['essay_b_id']}",
                )
            out["essay_a_id"], out["essay_b_id"] = a, b
        else:
            chosen_in_a = _chosen_side(path, frame, facts)
            if chosen_in_a is not None:
                out["essay_a_id"] = winner.where(chosen_in_a, loser)
                out["essay_b_id"] = loser.where(chosen_in_a, winner)
        return out
    a, b = _text(frame, facts["essay_a_id"]), _text(frame, facts["essay_b_id"])
    _require_ids(path, a, "essay in position A", facts["essay_a_id"])
    _require_ids(path, b, "essay in position B", facts["essay_b_id"])
    if "winner_id" in facts:
        better = _text(frame, facts["winner_id"])
        _require_ids(path, better, "winner", facts["winner_id"])
        unknown = (better != a) & (better != b)
        if unknown.any():
            raise _bad_rows(
                path,
                frame.index[unknown.to_numpy()],
                f"{facts['winner_id']} is neither {facts['essay_a_id']} nor {facts['essay_b_id']}",
                "the winner must be one of the two items compared",
            )
        winner_in_a = better == a
    else:
        fact = "is_left" if "is_left" in facts else "choice"
        side = _text(frame, facts[fact])
        empty = side == ""
        if empty.any():
            raise _bad_rows(
                path,
                side.index[empty],
                f"empty {facts[fact]}",
                "say which item won on every row, or mark the row excluded",
            )
        is_left = fact == "is_left"
        winner_in_a = (_flag if is_left else _side_is_a)(path, side, facts[fact])
    out["winner_id"] = a.where(winner_in_a, b)
    out["loser_id"] = b.where(winner_in_a, a)
    out["essay_a_id"], out["essay_b_id"] = a, b
    return out


def _seconds(path: Path, frame: pd.DataFrame, facts: Mapping[str, str]) -> pd.Series | None:
    for fact, scale in (("seconds_taken", 1.0), ("milliseconds_taken", 0.001)):
        if fact not in facts:
            continue
        column = facts[fact]
        raw = _text(frame, column)
        values = pd.to_numeric(raw.where(raw != ""), errors="coerce")
        bad = (values.isna() & (raw != "")) | (values < 0)
        if bad.any():
            raise _bad_rows(
                path,
                frame.index[bad.to_numpy()],
                f"{column} is not a time ({raw[bad].iloc[0]!r})",
                f"write {column} as a number of {'milli' if scale < 1 else ''}seconds ≥ 0",
            )
        return (values * scale).astype("float64")
    return None


def _timestamps(path: Path, frame: pd.DataFrame, column: str) -> pd.Series:
    raw = _text(frame, column)
    present = raw != ""
    try:
        parsed = pd.to_datetime(raw.where(present), utc=True, format="ISO8601")
    except (ValueError, TypeError):
        parsed = pd.to_datetime(raw.where(present), utc=True, format="mixed", errors="coerce")
    bad = parsed.isna() & present
    if bad.any():
        raise _bad_rows(
            path,
            frame.index[bad.to_numpy()],
            f"{column} {raw[bad].iloc[0]!r} is not a date and time",
            f"write {column} as ISO 8601, e.g. 2024-03-01T09:30:00Z (no zone = UTC)",
        )
    return parsed


def _same_both_sides(path: Path, out: pd.DataFrame) -> None:
    same = out["winner_id"] == out["loser_id"]
    if same.any():
        raise _bad_rows(
            path,
            out.index[same.to_numpy()],
            f"the same id on both sides ({out.loc[same, 'winner_id'].iloc[0]!r})",
            "an essay cannot be compared with itself; fix or exclude the row",
        )


def _drop_duplicates(path: Path, out: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    if "decision_id" not in out.columns:
        return out, 0
    ids = out["decision_id"]
    repeated = ids.duplicated(keep="first") & ids.notna()
    if not repeated.any():
        return out, 0
    first = out.loc[~repeated & ids.notna()].set_index("decision_id")
    repeats = out.loc[repeated]
    same = (repeats["decision_id"].map(first["winner_id"]) == repeats["winner_id"]) & (
        repeats["decision_id"].map(first["loser_id"]) == repeats["loser_id"]
    )
    if not same.all():
        clash = repeats.loc[~same]
        raise _bad_rows(
            path,
            clash.index,
            f"decision id {clash['decision_id'].iloc[0]!r} repeats an earlier row with another "
            "winner or loser",
            "keep one of the two rows or give them different ids",
        )
    return out.loc[~repeated], int(repeated.sum())


def read_judgement_file(
    path: str | Path,
    *,
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    task: str | None = None,
) -> JudgementFile:
    """Read a decision export; the decisions with their counts and how the file was read.

    Steps: read every cell as text (CSV with ``,``/``;``/tab sniffed from the header,
    ``.tsv``, or the first sheet of ``.xlsx``; UTF-8 or UTF-16 with BOM); resolve which
    column carries which fact (``columns`` first, then the layout, then common aliases); keep
    the rows of ``task``; skip rows marked excluded; check every remaining row; derive
    winner, loser and positions; skip repeated decision ids.

    Parameters
    ----------
    path : str or Path
        CSV, TSV or Excel ``.xlsx`` file with a header row.
    format : str, default "auto"
        ``"auto"`` tries every layout of :data:`LAYOUTS`; a layout name insists on it.
    columns : mapping, optional
        ``{canonical: source}`` for facts whose columns the layouts do not know, e.g.
        ``{"winner_id": "Preferred", "loser_id": "Other"}``; keys from
        :data:`MAPPABLE_COLUMNS`. A mapping wins over the layout.
    task : str, optional
        The task to import from a file holding several (required then).

    Returns
    -------
    JudgementFile

    Raises
    ------
    JudgementFileError
        Unreadable file or encoding, no recognisable columns, several tasks and no ``task``,
        an empty winner or loser, the same id on both sides, a side, flag, time or date that
        cannot be read, a repeated decision id with another outcome, or no decision left.
        The message names the file and the first offending rows (header = row 1).
    """
    path = Path(path)
    raw = _read_table(path)
    if raw.empty:
        raise _fail(path, "has a header but no decisions")
    layout, facts = _resolve_columns(path, raw, format, dict(columns or {}))
    frame = _cleaned(raw, sorted(set(facts.values())))
    del raw
    rows_read = len(frame)
    if rows_read == 0:
        raise _fail(path, "has a header but no decisions")
    frame, chosen_task, tasks, other_tasks = _select_task(path, frame, facts, task)
    excluded = 0
    if "excluded" in facts:
        drop = _flag(path, _text(frame, facts["excluded"]), facts["excluded"])
        excluded = int(drop.sum())
        frame = frame.loc[~drop.to_numpy()]
    if frame.empty:
        raise _fail(
            path,
            f"no decisions left to import ({excluded} excluded, {other_tasks} of other tasks)",
        )
    out = _decisions(path, frame, facts)
    _same_both_sides(path, out)
    if "judge_id" in facts:
        judges = _text(frame, facts["judge_id"])
        out["judge_id"] = judges.where(judges != "")
    if "decision_id" in facts:
        ids = _text(frame, facts["decision_id"])
        out["decision_id"] = ids.where(ids != "")
    seconds = _seconds(path, frame, facts)
    if seconds is not None:
        out["seconds_taken"] = seconds
    if "decided_at" in facts:
        out["decided_at"] = _timestamps(path, frame, facts["decided_at"])
    if chosen_task is not None:
        out["task"] = _text(frame, facts["task"])
    out, duplicates = _drop_duplicates(path, out)
    ordered = [c for c in CANONICAL_COLUMNS if c in out.columns]
    log.info(
        "%s: layout %s, %d rows, %d decisions, %d excluded, %d duplicates",
        path, layout, rows_read, len(out), excluded, duplicates,
    )  # fmt: skip
    return JudgementFile(
        path=path,
        layout=layout,
        columns=facts,
        decisions=out[ordered],
        rows_read=rows_read,
        excluded=excluded,
        duplicates=duplicates,
        other_tasks=other_tasks,
        task=chosen_task,
        tasks=tasks,
    )


def read_judgements(
    path: str | Path,
    *,
    format: str = "auto",
    columns: Mapping[str, str] | None = None,
    task: str | None = None,
) -> pd.DataFrame:
    """The decisions of an export with canonical columns (see :func:`read_judgement_file`).

    Returns
    -------
    pandas.DataFrame
        Indexed by row number in the file (header = row 1). ``winner_id``, ``loser_id``
        (text) and, when the file has them, ``essay_a_id``/``essay_b_id`` (position A is the
        item shown left, first or as A), ``judge_id``, ``decision_id``, ``seconds_taken``
        (float seconds; No More Marking's milliseconds are converted), ``decided_at`` (UTC)
        and ``task``. ``attrs["judgement_file"]`` holds the layout and the counts (rows read,
        excluded, duplicates, other tasks).
    """
    result = read_judgement_file(path, format=format, columns=columns, task=task)
    frame = result.decisions.copy()
    frame.attrs["judgement_file"] = {
        "path": str(result.path),
        "layout": result.layout,
        "task": result.task,
        **result.counts(),
    }
    return frame


# --------------------------------------------------------------------------------------------
# Anchor grades
# --------------------------------------------------------------------------------------------

_ANCHOR_ID = ("essayid", "id", "anchorid", "anchor", "anchorlabel", "label", "item", "candidate")
_ANCHOR_GRADE = ("grade", "anchorgrade", "gradelabel")


def read_anchor_grades(path: str | Path) -> dict[str, str]:
    """Anchor essay id → grade label from a CSV/TSV/xlsx with columns ``essay_id, grade``.

    Raises
    ------
    JudgementFileError
        Missing columns, an empty id or grade, or an id given two different grades.
    """
    path = Path(path)
    frame = _read_table(path)
    names = _by_normalised_name(frame)
    id_column = next((names[a] for a in _ANCHOR_ID if a in names), None)
    grade_column = next((names[a] for a in _ANCHOR_GRADE if a in names), None)
    if id_column is None or grade_column is None:
        raise _fail(
            path,
            "needs columns essay_id and grade (found: "
            + ", ".join(map(str, frame.columns))
            + "); rename the header",
        )
    frame = _cleaned(frame, [id_column, grade_column])
    ids, grades = _text(frame, id_column), _text(frame, grade_column)
    for values, what in ((ids, "essay id"), (grades, "grade")):
        if (values == "").any():
            raise _bad_rows(path, values.index[values == ""], f"empty {what}", "fill it in")
    table = pd.DataFrame({"id": ids, "grade": grades}).drop_duplicates()
    clash = table["id"].duplicated(keep=False)
    if clash.any():
        raise _bad_rows(
            path,
            table.index[clash.to_numpy()],
            f"essay {table.loc[clash, 'id'].iloc[0]!r} has two different grades",
            "give each anchor one grade",
        )
    return dict(zip(table["id"], table["grade"], strict=True))
