"""Write the decision-file fixtures of tests/fixtures/judgements/ (one per recognised layout).

Every good fixture holds the same 32 decisions (``expected.csv``) among three anchors
(``a1`` E+, ``a2`` C+, ``a3`` A) and five students, in the column names and conventions of
one export: No More Marking (ms times, isLeft, exclude, a repeated id), winner/loser tables,
R-style dotted names, left/right/choice tables, LLM ``ID1, ID2, better_id``. The bad fixtures
each break one rule. The Excel fixture is not committed: ``tests/unit/test_importing.py``
writes it with :func:`write_xlsx` so the binary never drifts from this script.

Run ``python scripts/make_judgement_fixtures.py`` after changing it, and commit the files.
"""

from __future__ import annotations

import csv
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

FOLDER = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "judgements"

#: True order, best first; every pair is compared once, with four upsets so the win graph is
#: strongly connected (the plain maximum-likelihood fit exists).
ORDER = ("a3", "s1", "a2", "s2", "s3", "a1", "s4", "s5")
UPSETS = {("s5", "a3"), ("s4", "s1"), ("s3", "a2"), ("a1", "s2")}
EXTRA = (("s1", "s2"), ("s4", "s5"), ("s3", "s1"), ("a2", "a1"))  # a few pairs seen twice
ANCHORS = {"a1": "E+", "a2": "C+", "a3": "A"}
START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)


def base_decisions() -> list[dict[str, object]]:
    """The 32 decisions every good fixture encodes."""
    rows = []
    pairs = list(itertools.combinations(ORDER, 2)) + list(EXTRA)
    for k, (better, worse) in enumerate(pairs):
        winner, loser = (worse, better) if (worse, better) in UPSETS else (better, worse)
        left_first = k % 3 != 0  # the winner was shown left two times in three
        rows.append(
            {
                "decision_id": f"d{k + 1:03d}",
                "judge_id": f"j{k % 3 + 1}",
                "winner_id": winner,
                "loser_id": loser,
                "essay_a_id": winner if left_first else loser,
                "essay_b_id": loser if left_first else winner,
                "seconds_taken": 12.5 + 3 * k,
                "decided_at": (START + timedelta(minutes=7 * k)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        )
    return rows


def _write(name: str, header: list[str], rows: list[list[object]], delimiter: str = ",") -> None:
    with (FOLDER / name).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _side(d: dict[str, object], a: str = "left", b: str = "right") -> str:
    return a if d["essay_a_id"] == d["winner_id"] else b


def write_nmm(name: str, decisions: list[dict[str, object]], tasks: list[str]) -> None:
    """No More Marking: ms times, e-mail and id of the judge, isLeft, exclude, a repeated id."""
    rows = []
    for d, task in zip(decisions, tasks, strict=True):
        rows.append(
            [
                d["decision_id"],
                int(float(d["seconds_taken"]) * 1000),
                d["decided_at"],
                d["judge_id"],
                f"{d['judge_id']}@school.example",
                d["winner_id"],
                d["loser_id"],
                str(d["essay_a_id"] == d["winner_id"]).lower(),
                "false",
                task,
            ]
        )
    # Two excluded rows (one with an empty winner: excluded rows are not checked) and a
    # repeated export of decision d005.
    rows.insert(
        3,
        [
            "x001",
            5000,
            "2024-03-01T08:00:00Z",
            "j9",
            "j9@school.example",
            "",
            "s1",
            "true",
            "true",
            tasks[0],
        ],
    )
    rows.insert(
        8,
        [
            "x002",
            900,
            "2024-03-01T08:01:00Z",
            "j9",
            "j9@school.example",
            "s1",
            "s2",
            "false",
            "TRUE",
            tasks[0],
        ],
    )
    rows.append(list(rows[6]))
    header = [
        "id",
        "timeTaken",
        "createdAt",
        "judgeId",
        "judge",
        "chosen",
        "notChosen",
        "isLeft",
        "exclude",
        "task",
    ]
    _write(name, header, rows)


def write_xlsx(path: Path, decisions: list[dict[str, object]]) -> None:
    """The 'Judge, Candidate Chosen, Candidate Not Chosen' layout as an Excel workbook."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["Judge", "Candidate Chosen", "Candidate Not Chosen", "Time Taken"])
    for d in decisions:
        sheet.append([d["judge_id"], d["winner_id"], d["loser_id"], d["seconds_taken"]])
    sheet.append([None, None, None, None])  # a blank row at the end, as spreadsheets leave
    book.save(path)


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    ds = base_decisions()
    fields = list(ds[0])
    _write("expected.csv", fields, [[d[f] for f in fields] for d in ds])
    write_nmm("nmm_export.csv", ds, ["essay-2024"] * len(ds))
    write_nmm("nmm_two_tasks.csv", ds + ds, ["essay-2024"] * len(ds) + ["letter-2024"] * len(ds))
    _write(
        "judge_candidate_chosen.csv",
        ["judge", "candidate_chosen", "candidate_not_chosen"],
        [[d["judge_id"], d["winner_id"], d["loser_id"]] for d in ds],
    )
    _write(
        "judge_candidate_chosen_spaces.csv",
        ["Judge", "Candidate Chosen", "Candidate Not Chosen", "Choice"],
        [[d["judge_id"], d["winner_id"], d["loser_id"], _side(d)] for d in ds],
    )
    _write(
        "r_style_dotted.csv",
        ["Judge", "Candidate.Chosen", "Candidate.Not.Chosen", "Time.Taken"],
        [[d["judge_id"], d["winner_id"], d["loser_id"], d["seconds_taken"]] for d in ds],
    )
    _write("won_lost.csv", ["won", "lost"], [[d["winner_id"], d["loser_id"]] for d in ds])
    _write(
        "winner_loser.tsv",
        ["Winner", "Loser", "Judge ID", "Decided At"],
        [[d["winner_id"], d["loser_id"], d["judge_id"], d["decided_at"]] for d in ds],
        delimiter="\t",
    )
    _write(
        "left_right_choice.csv",
        ["left", "right", "choice", "judge"],
        [[d["essay_a_id"], d["essay_b_id"], _side(d), d["judge_id"]] for d in ds],
    )
    _write(
        "ab_choice_semicolon.csv",
        ["A", "B", "Choice"],
        [[d["essay_a_id"], d["essay_b_id"], _side(d, "A", "B")] for d in ds],
        delimiter=";",
    )
    _write(
        "llm_id1_id2.csv",
        ["ID1", "ID2", "better_id", "model"],
        [[d["essay_a_id"], d["essay_b_id"], d["winner_id"], "judge-llm"] for d in ds],
    )
    _write(
        "custom_columns.csv",
        ["Preferred", "Other", "Marker", "Secs"],
        [[d["winner_id"], d["loser_id"], d["judge_id"], d["seconds_taken"]] for d in ds],
    )
    _write("anchors.csv", ["essay_id", "grade"], [[k, v] for k, v in ANCHORS.items()])

    # Bad inputs, one broken rule each.
    good = [[d["judge_id"], d["winner_id"], d["loser_id"]] for d in ds]
    header = ["judge", "candidate_chosen", "candidate_not_chosen"]
    empty = [list(r) for r in good]
    empty[2][1] = ""
    empty[6][1] = "  "
    _write("bad_empty_winner.csv", header, empty)
    same = [list(r) for r in good]
    same[4][2] = same[4][1]
    _write("bad_same_both_sides.csv", header, same)
    _write(
        "bad_unknown_layout.csv",
        ["rater", "first essay", "second essay", "preference"],
        [[d["judge_id"], d["essay_a_id"], d["essay_b_id"], "1"] for d in ds],
    )
    with (FOLDER / "bad_latin1.csv").open("w", newline="", encoding="latin-1") as handle:
        handle.write("judge,winner,loser\nj1,s1,s2\nJosé,s2,s3\n")
    _write(
        "bad_choice.csv",
        ["left", "right", "choice"],
        [
            [d["essay_a_id"], d["essay_b_id"], "middle" if i == 3 else _side(d)]
            for i, d in enumerate(ds)
        ],
    )
    _write(
        "bad_conflicting_duplicate.csv",
        ["id", "winner", "loser"],
        [[d["decision_id"], d["winner_id"], d["loser_id"]] for d in ds]
        + [[ds[0]["decision_id"], ds[0]["loser_id"], ds[0]["winner_id"]]],
    )
    _write(
        "bad_time.csv",
        ["winner", "loser", "seconds_taken"],
        [
            [d["winner_id"], d["loser_id"], "soon" if i == 1 else d["seconds_taken"]]
            for i, d in enumerate(ds)
        ],
    )
    _write("bad_anchors_unknown_id.csv", ["essay_id", "grade"], [["a1", "E+"], ["zz9", "A"]])
    _write("bad_anchors_unknown_grade.csv", ["essay_id", "grade"], [["a1", "E+"], ["a3", "A++"]])


if __name__ == "__main__":
    main()
