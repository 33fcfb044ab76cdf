"""The synthetic ENG5 data set generator and the data set loader."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cjlib.datasets import (
    ENG5_DATASET_DIR,
    TRUTH_COLUMNS,
    default_dataset_dir,
    generate_eng5_dataset,
    load_dataset,
    load_truth,
)
from cjlib.errors import DatasetError, UsageError
from cjlib.grades import ENG5_ANCHOR_GRADES

ROOT = Path(__file__).resolve().parents[2]
#: The data set committed in the repository and shipped as package data.
COMMITTED = ROOT / "cjlib" / "sample_data" / "eng5_np_2016"


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generate_eng5_dataset(tmp_path_factory.mktemp("eng5") / "ds", seed=2016)


@pytest.fixture(scope="module")
def loaded(generated):
    return load_dataset(generated)


# --- generator ---------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_for_every_file(generated, tmp_path):
    again = generate_eng5_dataset(tmp_path / "again", seed=2016)
    first, second = _files(generated), _files(again)
    assert len(first) == 12 + 120 + 5
    assert first == second


def test_same_seed_gives_identical_bytes_in_another_process(generated, tmp_path):
    out = tmp_path / "child"
    code = "import sys; from cjlib.datasets import generate_eng5_dataset as g; g(sys.argv[1])"
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, cwd=tmp_path)
    assert _files(out) == _files(generated)


def test_different_seed_gives_different_truth_and_texts(generated, tmp_path):
    other = generate_eng5_dataset(tmp_path / "other", seed=7)
    assert (other / "truth.csv").read_bytes() != (generated / "truth.csv").read_bytes()
    differing = [
        name
        for name in sorted(p.name for p in (generated / "students").iterdir())
        if (other / "students" / name).read_bytes() != (generated / "students" / name).read_bytes()
    ]
    assert len(differing) == 120


def test_generated_dataset_has_enough_students_and_the_eng5_anchor_grades(generated):
    anchors = pd.read_csv(generated / "anchors.csv", dtype=str)
    students = pd.read_csv(generated / "students.csv", dtype=str)
    assert list(anchors.columns) == ["label", "grade", "file"]
    assert tuple(anchors["grade"]) == ENG5_ANCHOR_GRADES
    assert list(anchors["label"]) == [f"eng5_anchor_{i:02d}" for i in range(1, 13)]
    assert all((generated / f).is_file() and f.startswith("anchors/") for f in anchors["file"])
    assert list(students.columns) == ["essay_id", "file"]
    assert len(students) == 120 >= 100
    assert list(students["file"]) == [f"students/{e}.txt" for e in students["essay_id"]]
    assert sorted(p.name for p in (generated / "students").iterdir()) == sorted(
        f"{e}.txt" for e in students["essay_id"]
    )


def test_n_students_sets_the_number_of_student_essays(tmp_path):
    out = generate_eng5_dataset(tmp_path / "small", seed=3, n_students=5)
    assert len(load_dataset(out).students) == 5


def test_truth_covers_every_essay_and_agrees_with_anchor_grades(generated, loaded):
    truth = load_truth(generated)
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert set(truth["essay_id"]) == set(loaded.anchors["label"]) | set(loaded.students["essay_id"])
    anchors = truth[truth["is_anchor"]].set_index("essay_id")
    assert anchors.loc[loaded.anchors["label"], "true_grade"].tolist() == list(ENG5_ANCHOR_GRADES)
    labels = loaded.grade_scale.all_labels
    assert [labels[i] for i in truth["grade_index"]] == truth["true_grade"].tolist()
    assert truth["ability"].dtype == float
    assert truth["is_anchor"].sum() == 12


def test_essays_have_150_to_450_words_and_quality_rises_with_ability(loaded):
    truth = loaded.truth.set_index("essay_id")
    texts = pd.Series(loaded.texts)
    ability = truth.loc[texts.index, "ability"]
    words = texts.map(_words)
    assert words.between(150, 450).all()
    assert words.corr(ability, method="spearman") > 0.6
    # Deliberate learner misspellings cluster in weak essays and vanish in strong ones.
    slips = texts.map(lambda t: len(re.findall(r"\b(scool|becuse|beacuse|realy|diffrent)\b", t)))
    low, high = ability <= ability.quantile(1 / 3), ability >= ability.quantile(2 / 3)
    assert slips[low].mean() > 3 * max(slips[high].mean(), 0.05)
    assert slips.corr(ability, method="spearman") < -0.4
    # Strong essays use a wider vocabulary within the same number of words.
    distinct = texts.map(lambda t: len({w.lower() for w in re.findall(r"[A-Za-z']+", t)[:150]}))
    assert distinct.corr(ability, method="spearman") > 0.3


def test_word_bounds_hold_for_other_seeds(tmp_path):
    for seed in (1, 99):
        out = generate_eng5_dataset(tmp_path / str(seed), seed=seed, n_students=60)
        assert all(150 <= _words(t) <= 450 for t in load_dataset(out).texts.values())


def test_data_card_says_synthetic_and_names_seed_files_and_grades(generated):
    card = (generated / "DATA_CARD.md").read_text(encoding="utf-8")
    assert "SYNTHETIC" in card
    assert "generate_eng5_dataset(out_dir, seed=2016, n_students=120)" in card
    assert "simulate_population" in card
    for name in ("prompt.md", "anchors.csv", "students.csv", "truth.csv"):
        assert f"`{name}`" in card
    for i, grade in enumerate(ENG5_ANCHOR_GRADES, start=1):
        assert f"| eng5_anchor_{i:02d} | {grade} |" in card
    assert "LLM" in card


def test_committed_dataset_equals_fresh_generation_with_its_recorded_seed(tmp_path):
    card = (COMMITTED / "DATA_CARD.md").read_text(encoding="utf-8")
    match = re.search(r"generate_eng5_dataset\(out_dir, seed=(\d+), n_students=(\d+)\)", card)
    assert match, "DATA_CARD.md must record the generation call"
    fresh = generate_eng5_dataset(tmp_path / "fresh", seed=int(match[1]), n_students=int(match[2]))
    committed, regenerated = _files(COMMITTED), _files(fresh)
    assert sorted(committed) == sorted(regenerated)
    stale = [name for name in committed if committed[name] != regenerated[name]]
    assert not stale, f"regenerate with scripts/generate_eng5_dataset.py: {stale[:5]}"


def test_generator_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "anchors.csv").write_text("label,grade,file\n")
    with pytest.raises(DatasetError, match="not empty and was not made by"):
        generate_eng5_dataset(tmp_path / "real")
    assert (tmp_path / "real" / "anchors.csv").read_text() == "label,grade,file\n"


def test_regenerating_with_fewer_students_removes_stale_essays(tmp_path):
    out = generate_eng5_dataset(tmp_path / "ds", seed=5, n_students=8)
    generate_eng5_dataset(out, seed=5, n_students=3)
    assert sorted(p.name for p in (out / "students").iterdir()) == [
        "S0001.txt",
        "S0002.txt",
        "S0003.txt",
    ]


def test_default_dataset_dir_prefers_the_current_directory(tmp_path, monkeypatch):
    (tmp_path / ENG5_DATASET_DIR).mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert default_dataset_dir() == tmp_path / ENG5_DATASET_DIR


def test_default_dataset_dir_falls_back_to_the_packaged_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_dataset_dir().resolve() == COMMITTED.resolve()


# --- loader ------------------------------------------------------------------------------------


def test_loader_round_trips_the_generated_dataset(generated, loaded):
    anchors = pd.read_csv(generated / "anchors.csv", dtype=str)
    assert loaded.path == generated
    assert loaded.grade_scale.name == "eng5_np_legacy_9_step"
    assert loaded.anchors[["label", "grade", "file"]].equals(anchors)
    assert loaded.anchor_grades.tolist() == list(ENG5_ANCHOR_GRADES)
    for row in loaded.students.itertuples():
        assert row.text == (generated / row.file).read_text(encoding="utf-8").strip()
    assert loaded.prompt == (generated / "prompt.md").read_text(encoding="utf-8").strip()
    assert loaded.prompt.startswith("# Lessons Outside the Classroom")
    assert loaded.truth["essay_id"].tolist() == list(loaded.texts)
    np.testing.assert_allclose(
        loaded.truth["ability"], pd.read_csv(generated / "truth.csv")["ability"]
    )


def _write_docx(path: Path, paragraphs: list[str]) -> None:
    from docx import Document

    document = Document()
    for text in paragraphs:
        document.add_paragraph(text)
    document.save(str(path))


def _minimal(folder: Path) -> Path:
    """Two anchors and two students in a students/ folder, all plain text."""
    (folder / "anchors").mkdir(parents=True)
    (folder / "students").mkdir()
    (folder / "anchors" / "a1.txt").write_text("A weak anchor essay.", encoding="utf-8")
    (folder / "anchors" / "a2.txt").write_text("A strong anchor essay.", encoding="utf-8")
    (folder / "anchors.csv").write_text(
        "label,grade,file\nA01,E-,anchors/a1.txt\nA02,B,anchors/a2.txt\n", encoding="utf-8"
    )
    (folder / "students" / "S2.txt").write_text("Second student.", encoding="utf-8")
    (folder / "students" / "S1.txt").write_text("First student.\n", encoding="utf-8")
    return folder


def test_loader_reads_markdown_and_word_essays(tmp_path):
    folder = _minimal(tmp_path / "ds")
    (folder / "anchors" / "a1.md").write_text("# Title\n\nMarkdown *anchor*.\n", encoding="utf-8")
    _write_docx(folder / "anchors" / "a2.docx", ["First paragraph.", "Second paragraph."])
    (folder / "anchors.csv").write_text(
        "label,grade,file\nA01,E-,anchors/a1.md\nA02,B,anchors/a2.docx\n", encoding="utf-8"
    )
    _write_docx(folder / "students" / "S3.docx", ["Word student essay."])
    (folder / "students" / "S4.md").write_text("Markdown student.", encoding="utf-8")
    ds = load_dataset(folder)
    assert ds.texts == {
        "A01": "# Title\n\nMarkdown *anchor*.",
        "A02": "First paragraph.\nSecond paragraph.",
        "S1": "First student.",
        "S2": "Second student.",
        "S3": "Word student essay.",
        "S4": "Markdown student.",
    }


def test_students_folder_is_scanned_in_id_order_when_students_csv_is_absent(tmp_path):
    folder = _minimal(tmp_path / "ds")
    (folder / "students" / "notes.pdf").write_bytes(b"%PDF")
    (folder / "students" / ".hidden.txt").write_text("not an essay", encoding="utf-8")
    (folder / "students" / "~$S1.docx").write_bytes(b"lock file")
    ds = load_dataset(folder)
    assert ds.students["essay_id"].tolist() == ["S1", "S2"]
    assert ds.students["file"].tolist() == ["students/S1.txt", "students/S2.txt"]
    assert ds.prompt is None
    assert ds.truth is None


def test_students_csv_wins_over_the_folder_and_keeps_its_order(tmp_path):
    folder = _minimal(tmp_path / "ds")
    (folder / "students.csv").write_text(
        "essay_id,file\nzeta,students/S2.txt\nalpha,students/S1.txt\n", encoding="utf-8"
    )
    ds = load_dataset(folder)
    assert ds.students["essay_id"].tolist() == ["zeta", "alpha"]
    assert ds.students["text"].tolist() == ["Second student.", "First student."]


def test_prompt_txt_is_read_when_there_is_no_prompt_md(tmp_path):
    folder = _minimal(tmp_path / "ds")
    (folder / "prompt.txt").write_text("  Write about school.\n", encoding="utf-8")
    assert load_dataset(folder).prompt == "Write about school."


def test_load_truth_returns_none_for_real_data(tmp_path):
    assert load_truth(_minimal(tmp_path / "ds")) is None


def test_unknown_grade_scale_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="unknown grade scale"):
        load_dataset(_minimal(tmp_path / "ds"), grade_scale="no_such_scale")


def test_other_grade_scales_check_their_own_grades(tmp_path):
    folder = _minimal(tmp_path / "ds")
    with pytest.raises(DatasetError, match="not an anchor grade on swedish_6"):
        load_dataset(folder, grade_scale="swedish_6")
    (folder / "anchors.csv").write_text(
        "label,grade,file\nA01,E,anchors/a1.txt\nA02,B,anchors/a2.txt\n", encoding="utf-8"
    )
    assert load_dataset(folder, grade_scale="swedish_6").anchor_grades.tolist() == ["E", "B"]


def _anchors_csv(rows: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "anchors.csv").write_text(rows, encoding="utf-8")

    return write


def _write(relative: str, content: str | bytes) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        path = folder / relative
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")

    return write


def _remove(relative: str) -> Callable[[Path], None]:
    def remove(folder: Path) -> None:
        path = folder / relative
        if path.is_dir():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
        else:
            path.unlink()

    return remove


ERROR_CASES = {
    "missing anchors.csv": (_remove("anchors.csv"), ["anchors.csv is missing", "label,grade,file"]),
    "missing column": (
        _anchors_csv("label,file\nA01,anchors/a1.txt\n"),
        ["anchors.csv lacks column(s) grade", "label,grade,file"],
    ),
    "no rows": (_anchors_csv("label,grade,file\n"), ["anchors.csv has no rows"]),
    "empty cell": (
        _anchors_csv("label,grade,file\nA01,,anchors/a1.txt\n"),
        ["anchors.csv row 2", "column 'grade' is empty"],
    ),
    "missing essay file": (
        _anchors_csv("label,grade,file\nA01,E-,anchors/a1.txt\nA02,B,anchors/gone.txt\n"),
        ["anchors.csv row 3 (label A02)", "anchors/gone.txt not found", "fix the file column"],
    ),
    "unsupported extension": (
        _anchors_csv("label,grade,file\nA01,E-,anchors/a1.pdf\n"),
        ["anchors.csv row 2 (label A01)", "unsupported file type '.pdf'", ".txt, .md, .docx"],
    ),
    "unknown grade": (
        _anchors_csv("label,grade,file\nA01,E-,anchors/a1.txt\nA02,G,anchors/a2.txt\n"),
        [
            "anchors.csv row 3 (label A02)",
            "grade 'G'",
            "eng5_np_legacy_9_step",
            "F+, E-, E+, D-, D+, C-, C+, B, A",
        ],
    ),
    "below-lowest grade on an anchor": (
        _anchors_csv("label,grade,file\nA01,F,anchors/a1.txt\n"),
        ["grade 'F' is not an anchor grade"],
    ),
    "empty anchor text": (
        _write("anchors/a2.txt", " \n\t\n"),
        ["anchors.csv row 3 (label A02)", "anchors/a2.txt is empty", "add the essay text"],
    ),
    "empty student text": (_write("students/S2.txt", "\n"), ["students/S2.txt is empty"]),
    "duplicate labels": (
        _anchors_csv("label,grade,file\nA01,E-,anchors/a1.txt\nA01,B,anchors/a2.txt\n"),
        ["anchors.csv repeats label 'A01' (rows 2, 3)", "unique"],
    ),
    "duplicate student ids in students.csv": (
        _write("students.csv", "essay_id,file\nS1,students/S1.txt\nS1,students/S2.txt\n"),
        ["students.csv repeats essay_id 'S1' (rows 2, 3)"],
    ),
    "duplicate student ids in students/": (
        _write("students/S1.md", "Another S1."),
        ["several files for essay id 'S1'", "S1.md", "S1.txt"],
    ),
    "missing student file": (
        _write("students.csv", "essay_id,file\nS9,students/S9.txt\n"),
        ["students.csv row 2 (essay S9)", "students/S9.txt not found"],
    ),
    "anchor label is a student id": (
        _write("students/A02.txt", "Clash."),
        ["A02", "also student essay ids", "rename"],
    ),
    "no students": (_remove("students"), ["has no student essays", "students.csv"]),
    "empty students folder": (
        lambda folder: [p.unlink() for p in (folder / "students").iterdir()],
        ["holds no .txt, .md or .docx essays"],
    ),
    "broken docx": (
        _write("students/S3.docx", b"not a zip"),
        ["S3.docx cannot be read as a Word document"],
    ),
    "not utf-8": (
        _write("anchors/a1.txt", "Caf\xe9".encode("latin-1")),
        ["anchors/a1.txt is not UTF-8", "re-save"],
    ),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_malformed_dataset_raises_a_one_line_dataset_error(tmp_path, case):
    breaker, fragments = ERROR_CASES[case]
    folder = _minimal(tmp_path / "ds")
    load_dataset(folder)  # valid before it is broken
    breaker(folder)
    with pytest.raises(DatasetError) as info:
        load_dataset(folder)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert info.value.exit_code == 2


def test_missing_folder_raises_a_dataset_error_naming_it(tmp_path):
    with pytest.raises(DatasetError, match=r"data set folder .*nowhere does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_load_truth_rejects_a_bad_flag(tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text(
        "essay_id,is_anchor,ability,true_grade,grade_index\nS1,maybe,0.1,C-,6\n",
        encoding="utf-8",
    )
    with pytest.raises(DatasetError, match=r"truth.csv row 2: is_anchor must be True or False"):
        load_truth(path)
