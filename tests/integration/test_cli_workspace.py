"""`cj init`, where `cj pipeline` finds its notebooks, and the `--batch-label` option."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import pytest

import cjlib.pipeline
import cjlib.workflow
from cjlib.cli.main import main
from cjlib.errors import NotFoundError, UsageError
from cjlib.package_data import package_path, packaged_notebooks_dir, sample_dataset_dir
from cjlib.pipeline import NOTEBOOKS, notebooks_dir
from cjlib.workspace import init_workspace


def _same_tree(left: Path, right: Path) -> bool:
    files = sorted(p.relative_to(left) for p in left.rglob("*") if p.is_file())
    if files != sorted(p.relative_to(right) for p in right.rglob("*") if p.is_file()):
        return False
    _, mismatch, errors = filecmp.cmpfiles(left, right, [str(f) for f in files], shallow=False)
    return not mismatch and not errors


def test_cj_init_copies_notebooks_sample_data_and_readme(tmp_path, capsys):
    folder = tmp_path / "work"
    assert main(["init", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "cj pipeline" in out
    for name in NOTEBOOKS:
        copy = folder / "notebooks" / f"{name}.ipynb"
        assert copy.read_bytes() == (packaged_notebooks_dir() / f"{name}.ipynb").read_bytes()
    assert _same_tree(folder / "data" / "eng5_np_2016", sample_dataset_dir())
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert readme == package_path("workspace_template", "README.md").read_text(encoding="utf-8")
    assert "cj pipeline" in readme


def test_cj_init_into_an_existing_empty_folder_works(tmp_path):
    (tmp_path / "empty").mkdir()
    assert main(["init", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty" / "notebooks" / f"{NOTEBOOKS[0]}.ipynb").is_file()


def test_cj_init_refuses_a_non_empty_folder_in_one_line_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    assert main(["init", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {folder} is not empty")
    assert "--force" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == ["mine.txt"]


def test_cj_init_refuses_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["init", str(target)]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_cj_init_force_replaces_scaffold_and_keeps_other_files(tmp_path):
    folder = tmp_path / "work"
    init_workspace(folder)
    edited = folder / "notebooks" / f"{NOTEBOOKS[3]}.ipynb"
    edited.write_text("{}")
    stray = folder / "data" / "eng5_np_2016" / "stray.txt"
    stray.write_text("old")
    (folder / "notes.md").write_text("mine")
    assert main(["init", "--force", str(folder)]) == 0
    assert edited.read_bytes() == (packaged_notebooks_dir() / edited.name).read_bytes()
    assert not stray.exists()
    assert _same_tree(folder / "data" / "eng5_np_2016", sample_dataset_dir())
    assert (folder / "notes.md").read_text() == "mine"


def test_pipeline_uses_the_working_folders_notebooks_when_it_has_them(tmp_path, monkeypatch):
    init_workspace(tmp_path / "work")
    monkeypatch.chdir(tmp_path / "work")
    assert notebooks_dir() == tmp_path / "work" / "notebooks"


def test_pipeline_uses_the_packaged_notebooks_elsewhere(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "unrelated.ipynb").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert notebooks_dir() == packaged_notebooks_dir()
    assert packaged_notebooks_dir().resolve().is_relative_to(Path(cjlib.__file__).parent.resolve())


def test_pipeline_refuses_a_working_folder_with_some_notebooks_missing(tmp_path, monkeypatch):
    init_workspace(tmp_path / "work")
    (tmp_path / "work" / "notebooks" / f"{NOTEBOOKS[2]}.ipynb").unlink()
    monkeypatch.chdir(tmp_path / "work")
    with pytest.raises(NotFoundError, match=f"lacks {NOTEBOOKS[2]}.ipynb"):
        notebooks_dir()


def test_package_path_names_missing_package_data():
    with pytest.raises(
        NotFoundError, match=re.escape("no_such_file.json is missing; reinstall cjlib")
    ):
        package_path("no_such_file.json")


class _Stop(UsageError):
    """Raised by the stand-ins below once they have seen their arguments."""


@pytest.mark.parametrize("option", ["--batch-label", "--batch-id"])
def test_batch_execute_takes_batch_label_or_its_alias_batch_id(option, monkeypatch, capsys):
    seen = {}

    def fake_execute_batch(engine, **kwargs):
        seen.update(kwargs)
        raise _Stop("stop")

    monkeypatch.setattr(cjlib.workflow, "execute_batch", fake_execute_batch)
    monkeypatch.setattr("cjlib.cli.batch.open_engine", lambda url: None)
    code = main(
        ["batch", "execute", "--assignment-id", "a", "--course-id", "c", option, "my label",
         "--max-comparisons", "5"]
    )  # fmt: skip
    assert code == 2 and capsys.readouterr().err.strip() == "error: stop"
    assert seen["batch_label"] == "my label"


@pytest.mark.parametrize("option", ["--batch-label", "--batch-id"])
def test_pipeline_takes_batch_label_or_its_alias_batch_id(option, monkeypatch, capsys):
    seen = {}

    def fake_run_pipeline(**kwargs):
        seen.update(kwargs)
        raise _Stop("stop")

    monkeypatch.setattr(cjlib.pipeline, "run_pipeline", fake_run_pipeline)
    assert main(["pipeline", option, "[green]label[/green]"]) == 2
    assert seen["batch_label"] == "[green]label[/green]"
    assert main(["pipeline"]) == 2
    assert seen["batch_label"] == "eng5-demo"
