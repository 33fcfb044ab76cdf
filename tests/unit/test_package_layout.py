"""The package's shape: the domain never imports its shell; package data ships with the code."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import cjlib
from cjlib.package_data import package_path

PACKAGE = Path(cjlib.__file__).resolve().parent
#: Modules of cjlib/cli that are not command groups.
#: CLI modules that are not command groups: plumbing, and `batch_resume`, which adds
#: `resume` to the `batch` group.
SHELL_PLUMBING = {"__init__", "__main__", "main", "_common", "_llm", "batch_resume"}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_domain_module_imports_the_cli():
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in _imported_modules(path) if name.startswith("cjlib.cli")
        )
        for path in PACKAGE.rglob("*.py")
        if "cli" not in path.relative_to(PACKAGE).parts[:1]
    }
    assert {module: names for module, names in offenders.items() if names} == {}


def test_every_cli_group_module_is_wired_into_the_root_app():
    from cjlib.cli.main import app

    wired = [info.typer_instance for info in app.registered_groups]
    names = sorted(p.stem for p in (PACKAGE / "cli").glob("*.py") if p.stem not in SHELL_PLUMBING)
    assert names == [
        "anchors",
        "batch",
        "db",
        "health",
        "judgements",
        "pipeline",
        "study",
        "workspace",
    ]
    for name in names:
        module = importlib.import_module(f"cjlib.cli.{name}")
        assert any(module.app is group for group in wired), name


def test_package_data_is_found_through_importlib_resources():
    notebooks = sorted(p.name for p in package_path("notebooks").glob("*.ipynb"))
    assert notebooks == [
        "01_register_anchors.ipynb",
        "02_execute_eng5_batch.ipynb",
        "03_snapshot_projections.ipynb",
        "04_validation_report.ipynb",
        "05_design_study.ipynb",
    ]
    sample = package_path("sample_data", "eng5_np_2016")
    assert (sample / "anchors.csv").is_file() and len(list((sample / "students").iterdir())) == 120
    assert (package_path("essay_grammar") / "eng5_grammar.json").is_file()
