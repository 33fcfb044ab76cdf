"""``cj study``: run the design-study notebook with papermill into a fresh run folder.

:func:`run_study` checks the setting (:func:`cjlib.design.check_study_setting`, so bad input
leaves nothing behind), creates ``<output_dir>/<UTC stamp>_design_study/``, executes notebook
``05_design_study`` there with the study's parameters (its simulation runs in process, no
database), and exports the executed notebook without code to a self-contained
``design_study.html``; the notebook writes ``design_study.csv`` (one row per run,
:data:`cjlib.design.COLUMNS`) into the same folder.

The kernel runs with one BLAS thread (``OPENBLAS_NUM_THREADS=1`` and its OpenMP / MKL
siblings): the study's matrices are small, where threads only contend on a shared machine
(``docs/design_study.md``: the exact-SE inverse for 112 essays took 93 ms with default
threads on 2 busy cores, 27 ms with one).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cjlib import defaults
from cjlib.package_data import packaged_notebooks_dir

log = logging.getLogger(__name__)

#: The notebook ``cj study`` runs.
STUDY_NOTEBOOK = "05_design_study"
#: Files of the run folder.
STUDY_CSV = "design_study.csv"
STUDY_HTML = "design_study.html"
#: Environment of the notebook kernel: one BLAS thread.
SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` produced."""

    run_dir: Path
    csv_path: Path
    report_html: Path
    notebook: Path


def study_notebooks_dir() -> Path:
    """``./notebooks`` when the working folder has its own ``05_design_study.ipynb``, else the
    notebooks shipped with cjlib."""
    local = Path.cwd() / "notebooks"
    if (local / f"{STUDY_NOTEBOOK}.ipynb").is_file():
        return local
    return packaged_notebooks_dir()


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    # The kernel inherits this process's environment when it starts; restored afterwards so
    # a caller (a test, a notebook) keeps its own settings.
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_study(
    *,
    strategies: Sequence[str] = defaults.DEFAULT_STUDY_STRATEGIES,
    per_essay: Sequence[float] = defaults.DEFAULT_STUDY_PER_ESSAY,
    seeds: int = defaults.DEFAULT_STUDY_SEEDS,
    students: int = defaults.DEFAULT_STUDY_STUDENTS,
    discrimination: float = defaults.DEFAULT_STUDY_DISCRIMINATION,
    judge_noise: float = defaults.DEFAULT_STUDY_JUDGE_NOISE,
    output_dir: str | Path = "reports/runs",
    kernel_name: str | None = None,
    progress: bool = False,
) -> StudyResult:
    """Run the design study notebook into a fresh run folder and export its HTML report.

    Parameters
    ----------
    strategies, per_essay, seeds, students, discrimination, judge_noise
        As :func:`cjlib.design.run_design_study` (defaults: its defaults, the study quoted in
        ``docs/design_study.md``).
    output_dir : path
        Parent of the run folder ``<UTC stamp>_design_study``.
    kernel_name : str, optional
        Jupyter kernel (default ``python3``, which must run this interpreter).
    progress : bool
        Show papermill's per-cell progress bars on stderr.

    Returns
    -------
    StudyResult

    Raises
    ------
    UsageError
        A bad setting (unknown strategy, size below 1, no seeds, …); nothing is written.
    PipelineError
        The notebook failed (naming the cell and the error) or no kernel runs this interpreter.
    """
    from cjlib import design
    from cjlib.pipeline import check_kernel, execute_notebook, export_report
    from cjlib.provenance import fresh_run_dir

    strategies = [str(s).strip() for s in strategies]
    per_essay = [int(p) if float(p).is_integer() else float(p) for p in per_essay]
    design.check_study_setting(strategies, per_essay, seeds, students, discrimination, judge_noise)
    kernel = check_kernel(kernel_name)
    run_dir = fresh_run_dir(Path(output_dir).resolve(), "design", "study")
    parameters = {
        "strategies": strategies,
        "per_essay": per_essay,
        "seeds": int(seeds),
        "students": int(students),
        "discrimination": float(discrimination),
        "judge_noise": float(judge_noise),
        "output_dir": str(run_dir),
    }
    with _environment(SINGLE_THREAD_ENV):
        notebook = execute_notebook(
            STUDY_NOTEBOOK, run_dir, parameters, kernel_name=kernel, progress=progress,
            source_dir=study_notebooks_dir(),
        )  # fmt: skip
    report = export_report(notebook, run_dir / STUDY_HTML, title="CJ design study")
    log.info("design study finished: %s", report)
    return StudyResult(
        run_dir=run_dir, csv_path=run_dir / STUDY_CSV, report_html=report, notebook=notebook
    )
