"""The wheel works outside the checkout: build, install (not editable), `cj init`, `cj pipeline`.

The test builds cjlib's wheel from a copy of the package sources, installs it into a fresh
virtual environment in a temporary folder and runs the console script ``cj`` from empty
folders with a clean environment (no ``PYTHONPATH``, a fresh ``HOME``, no ``CJ_*`` variables),
so nothing can be found in the repository checkout: the notebooks, the sample data set and the
essay grammar must come from the wheel.

Dependencies: installing cjlib's ~100 dependencies into every fresh venv takes minutes, so by
default the new venv sees the distributions already installed for the test run through a
``.pth`` line naming this interpreter's site-packages (``.pth`` files inside that folder are not
processed, so the editable cjlib of the checkout stays invisible) and a link to their Jupyter
data files (``share/jupyter``); ``pip check`` proves that every requirement the wheel declares
is met. ``CJ_WHEEL_TEST_FULL_INSTALL=1`` installs the
dependencies from the package index instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from cjlib.pipeline import NOTEBOOKS, REPORT_HTML

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[2]
FULL_INSTALL = os.environ.get("CJ_WHEEL_TEST_FULL_INSTALL") == "1"
#: Small budget: the test is about packaging, the statistics are tested elsewhere.
BUDGET = "40"
MARKER = "Edited in this working folder (wheel test)."


def _run(args: list[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout=900):
    done = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done


def _start(args: list[str | Path], *, cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(process: subprocess.Popen, timeout: float = 900) -> str:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, f"{process.args} failed ({process.returncode}):\n{out}\n{err}"
    return out


def _build_wheel(tmp: Path) -> Path:
    # Built from a copy so no build/ or *.egg-info lands in the checkout while other tests run.
    src = tmp / "src"
    shutil.copytree(
        ROOT / "cjlib", src / "cjlib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    dist = tmp / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", dist, src],
        cwd=tmp,
    )  # fmt: skip
    (wheel,) = dist.glob("cjlib-*.whl")
    return wheel


def _make_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]
    if FULL_INSTALL:
        _run([*pip, "install", "--quiet", wheel], cwd=tmp)
    else:
        site = Path(
            _run(
                [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd=tmp,
            ).stdout.strip()
        )
        ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
        (site / "cj_wheel_test_dependencies.pth").write_text("\n".join(ours) + "\n")
        # Data files the dependencies installed beside site-packages (nbconvert's templates,
        # ipykernel's kernel spec) belong to that install too.
        (venv / "share").mkdir(exist_ok=True)
        (venv / "share" / "jupyter").symlink_to(Path(sys.prefix) / "share" / "jupyter")
        _run([*pip, "install", "--quiet", "--no-deps", "--no-index", wheel], cwd=tmp)
    _run([*pip, "check"], cwd=tmp)
    return venv


def _clean_env(venv: Path, home: Path) -> dict[str, str]:
    home.mkdir(exist_ok=True)
    return {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin{os.pathsep}/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(home),
    }


def _report(stdout: str, folder: Path) -> Path:
    html = Path(stdout.strip().splitlines()[-1])
    assert html.name == REPORT_HTML and html.is_file()
    assert html.parent.parent == folder / "reports" / "runs"
    assert (folder / "data" / "cj.sqlite3").is_file()
    return html


def _line(stdout: str, prefix: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith(prefix)]
    return line.removeprefix(prefix)


def _mark_notebook(notebook: Path) -> None:
    nb = nbformat.read(str(notebook), as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell(MARKER))
    nbformat.write(nb, str(notebook))


def test_wheel_runs_cj_init_and_cj_pipeline_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    venv = _make_venv(tmp_path, wheel)
    env = _clean_env(venv, tmp_path / "home")
    cj = venv / "bin" / "cj"

    # The installed cjlib is the wheel's, with its package data, not the checkout's.
    where = _run(
        [venv / "bin" / "python", "-c",
         "import json, cjlib, cjlib.package_data as p; print(json.dumps([cjlib.__file__, "
         "str(p.packaged_notebooks_dir()), str(p.sample_dataset_dir())]))"],
        cwd=tmp_path, env=env,
    )  # fmt: skip
    for path in json.loads(where.stdout):
        assert Path(path).resolve().is_relative_to(venv.resolve()), path

    # cj init, then cj pipeline in the working folder: its own (edited) notebooks run.
    _run([cj, "init", "work"], cwd=tmp_path, env=env)
    work = tmp_path / "work"
    assert sorted(p.name for p in (work / "notebooks").iterdir()) == [
        f"{name}.ipynb" for name in NOTEBOOKS
    ]
    assert (work / "data" / "eng5_np_2016" / "anchors.csv").is_file()
    assert (work / "README.md").read_text(encoding="utf-8").startswith("# CJ working folder")
    _mark_notebook(work / "notebooks" / "04_validation_report.ipynb")
    empty = tmp_path / "empty"
    empty.mkdir()

    # Both pipelines at once (separate folders and databases): the test waits for the slower.
    in_work = _start([cj, "pipeline", "--max-comparisons", BUDGET], cwd=work, env=env)
    in_empty = _start(
        [cj, "pipeline", "--max-comparisons", BUDGET, "--batch-label", "no-init"],
        cwd=empty,
        env=env,
    )

    # A second cj init into the now non-empty folder is refused with one line, exit 2.
    refused = subprocess.run(
        [str(cj), "init", "work"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("error: work is not empty")
    assert len(refused.stderr.strip().splitlines()) == 1

    # In the working folder its own (edited) notebooks ran.
    out = _wait(in_work)
    html = _report(out, work)
    assert MARKER in html.read_text(encoding="utf-8")
    assert Path(_line(out, "notebooks ")) == work / "notebooks"

    # In an empty folder: the packaged notebooks and data set, the database made there.
    out = _wait(in_empty)
    html = _report(out, empty)
    assert Path(_line(out, "notebooks ")).resolve().is_relative_to(venv.resolve())
    assert html.parent.name.endswith("_no-init_pipeline")
    assert MARKER not in html.read_text(encoding="utf-8")
    assert sorted(p.name for p in empty.iterdir()) == ["data", "reports"]
