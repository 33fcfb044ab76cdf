"""The notebook pipeline: run the four ENG5 notebooks with papermill into one run folder.

``cj pipeline`` and ``make run`` call :func:`run_pipeline`, which

1. creates a fresh run folder ``<output_dir>/<UTC stamp>_<label>_pipeline``;
2. executes, in order and in one Jupyter kernel each, ``01_register_anchors``,
   ``02_execute_eng5_batch``, ``03_snapshot_projections`` and ``04_validation_report`` from
   :func:`notebooks_dir` (the working folder's ``notebooks/``, else the copies shipped in the
   package); the executed copies land in the run folder;
3. exports the executed ``04_validation_report`` without code to a self-contained
   ``validation_report.html`` (figures are embedded base64 PNGs);
4. refreshes ``assessment_run.execute.json`` so its manifest lists every file of the run.

How the batch id travels: notebook 02 calls :func:`cjlib.notebook.write_batch_record`, which
writes ``batch.json`` (``cj_batch_id``, ``bos_batch_id``, …) into the run folder; the pipeline
reads it with :func:`cjlib.notebook.read_batch_record` and passes ``cj_batch_id`` to notebooks 03
and 04 as a papermill parameter. Run by hand, those notebooks read ``batch.json`` themselves
when ``cj_batch_id`` is None. A file written by a cjlib function is sturdier than scraping a
cell's output.

The database URL is resolved once (:func:`cjlib.config.resolve_database_url`), connected to
once before any kernel starts (an unusable URL exits 2), and reaches every notebook, so all
four use the same database whatever their working directory: the ``database_url`` parameter
holds it with the password masked (papermill writes parameters into the executed copies), and
the kernels get the real URL in ``CJ_DATABASE_URL``, which
:func:`cjlib.notebook.fill_parameters` puts back in place of the masked one.

Import mode (``cj pipeline --judgements PATH``): notebook 02 imports a human decision export
with :func:`cjlib.workflow.imports.import_judgement_file` instead of running the simulated
judge (parameters ``judgements_path``, ``judgements_anchors``, ``judgements_task``,
``judgements_format``, ``judgements_columns``). Notebook 01 is skipped: an import needs no
registered anchors (the anchors, if any, are essays of the file graded by ``--anchors``) and
writes the assignment's instructions itself when it has none; notebook 02 migrates the
database instead. The file and the anchors are read and checked before any kernel starts, and
notebook 04 gets no data set (an imported batch has no known true grades).

Environment variables
---------------------
CJ_NOTEBOOK_PARAMETERS
    A JSON object of notebook parameters for runs outside the pipeline (``pytest --nbval-lax
    notebooks/``, JupyterLab): :func:`cjlib.notebook.fill_parameters` uses its values for
    parameters left at None. The pipeline passes every parameter explicitly, so it does not
    depend on it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cjlib.config import resolve_database_url
from cjlib.db import safe_url
from cjlib.defaults import (
    DEFAULT_ASSIGNMENT_ID,
    DEFAULT_BATCH_LABEL,
    DEFAULT_COURSE_ID,
    DEFAULT_MAX_COMPARISONS,
    DEFAULT_SEED,
)
from cjlib.errors import DatasetError, NotFoundError, PipelineError, UsageError
from cjlib.notebook import new_pipeline_run_dir, read_batch_record
from cjlib.package_data import packaged_notebooks_dir

log = logging.getLogger(__name__)

#: The notebooks of the pipeline, in the order they run.
NOTEBOOKS = (
    "01_register_anchors",
    "02_execute_eng5_batch",
    "03_snapshot_projections",
    "04_validation_report",
)
#: The notebook exported to HTML.
REPORT_NOTEBOOK = "04_validation_report"
#: Where a working folder keeps its own copies of the notebooks, relative to it.
WORKING_NOTEBOOKS_DIR = Path("notebooks")
#: The HTML validation report in the run folder.
REPORT_HTML = "validation_report.html"
#: Parameters the pipeline sets itself; ``-p`` may not override them.
RESERVED_PARAMETERS = frozenset({"run_dir", "cj_batch_id", "database_url"})
#: Notebook parameters of import mode (notebook 02), see :func:`run_pipeline`.
IMPORT_PARAMETERS = (
    "judgements_path",
    "judgements_anchors",
    "judgements_task",
    "judgements_format",
    "judgements_columns",
)
#: Seconds to wait for a kernel to start (shared CI machines can be slow).
KERNEL_START_TIMEOUT = 120


@dataclass(frozen=True)
class PipelineResult:
    """What :func:`run_pipeline` produced."""

    run_dir: Path
    report_html: Path
    executed_notebooks: tuple[Path, ...]
    cj_batch_id: int


# --------------------------------------------------------------------------------------------
# Running notebooks
# --------------------------------------------------------------------------------------------


def notebooks_dir() -> Path:
    """The folder of the notebooks the pipeline runs.

    Returns
    -------
    Path
        ``./notebooks`` when the current folder has its own copies (a working folder made by
        ``cj init``, whose notebooks the researcher may edit), else the notebooks shipped inside
        the package (:func:`cjlib.package_data.packaged_notebooks_dir`).

    Raises
    ------
    NotFoundError
        ``./notebooks`` holds some of :data:`NOTEBOOKS` but not all (a half-copied working
        folder would silently mix edited and packaged notebooks).
    """
    local = Path.cwd() / WORKING_NOTEBOOKS_DIR
    present = [name for name in NOTEBOOKS if (local / f"{name}.ipynb").is_file()]
    if not present:
        return packaged_notebooks_dir()
    missing = [f"{name}.ipynb" for name in NOTEBOOKS if name not in present]
    if missing:
        raise NotFoundError(
            f"{local} lacks {', '.join(missing)}; copy them from a fresh `cj init` folder, or "
            "move that folder away to run the notebooks shipped with cjlib"
        )
    return local


def declared_parameters(notebook: str | Path) -> dict[str, Any]:
    """Names and default values of the parameters a notebook's ``parameters`` cell declares."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    return {name: info["default"] for name, info in declared.items()}


def parse_parameters(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; a value is JSON when it parses as JSON, else a string.

    Raises
    ------
    UsageError
        An item has no ``=`` or an empty or non-identifier key.
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"parameter {item!r} is not key=value with a Python name as key")
        try:
            parsed[key] = json.loads(text)
        except json.JSONDecodeError:
            parsed[key] = text
    return parsed


_PYTHON_COMMANDS = {
    "python",
    f"python{sys.version_info[0]}",
    f"python{sys.version_info[0]}.{sys.version_info[1]}",
}


def check_kernel(kernel_name: str | None = None) -> str:
    """The Jupyter kernel to run notebooks with, checked to run this very interpreter.

    jupyter_client starts a kernelspec whose command is ``python`` (what ipykernel installs
    into ``<venv>/share/jupyter/kernels/python3``) with ``sys.executable``; a spec naming
    another interpreter would run the notebooks without this cjlib.

    Raises
    ------
    PipelineError
        No kernelspec of that name, or it runs another interpreter.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    name = kernel_name or "python3"
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise PipelineError(
            f"no Jupyter kernel named {name!r}; install one for this interpreter with "
            f"`{sys.executable} -m ipykernel install --sys-prefix`"
        ) from None
    command = spec.argv[0] if spec.argv else ""
    # Compared without resolving symlinks: a venv's python is a symlink to the base
    # interpreter, which runs without the venv's packages.
    if (
        command not in _PYTHON_COMMANDS
        and Path(command).absolute() != Path(sys.executable).absolute()
    ):
        raise PipelineError(
            f"Jupyter kernel {name!r} ({spec.resource_dir}) runs {command!r}, not this "
            f"interpreter {sys.executable}; install the right one with `{sys.executable} -m "
            "ipykernel install --sys-prefix` or pick another with --kernel"
        )
    return name


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _kernel_manager_option() -> dict[str, Any]:
    # On POSIX the kernel talks to us over Unix sockets instead of local TCP: nothing listens
    # on a port, and ipykernel no longer warns about unencrypted TCP at every kernel start.
    if sys.platform == "win32":
        return {}
    from jupyter_client.manager import AsyncKernelManager

    class _IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"

    return {"kernel_manager_class": _IPCKernelManager}


def execute_notebook(
    name: str,
    run_dir: str | Path,
    parameters: Mapping[str, Any],
    *,
    kernel_name: str | None = None,
    progress: bool = False,
    source_dir: str | Path | None = None,
) -> Path:
    """Execute notebook ``name`` of :func:`notebooks_dir` with papermill into ``run_dir``.

    Parameters
    ----------
    name : str
        Notebook name without ``.ipynb``, e.g. ``04_validation_report``.
    run_dir : path
        Folder for the executed copy.
    parameters : mapping
        Values injected after the notebook's ``parameters`` cell (only names it declares are
        passed on).
    kernel_name : str, optional
        Jupyter kernel (default ``python3``, checked by :func:`check_kernel`).
    progress : bool
        Show papermill's progress bar on stderr.
    source_dir : path, optional
        Folder to take the notebook from instead of :func:`notebooks_dir`.

    Returns
    -------
    Path
        The executed notebook.

    Raises
    ------
    PipelineError
        A cell raised (the message names the notebook, the cell's index and first source line
        and the error) or the kernel died; the executed copy keeps the traceback.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source = Path(source_dir or notebooks_dir()) / f"{name}.ipynb"
    output = Path(run_dir) / f"{name}.ipynb"
    declared = declared_parameters(source)
    passed = {k: _plain(v) for k, v in parameters.items() if k in declared}
    log.info("running notebook %s into %s", name, output)
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=passed,
            kernel_name=check_kernel(kernel_name),
            cwd=str(Path.cwd()),
            progress_bar=progress,
            start_timeout=KERNEL_START_TIMEOUT,
            **_kernel_manager_option(),
        )
    except PapermillExecutionError as err:
        evalue = " ".join(str(err.evalue).split())
        raise PipelineError(
            f"notebook {name}.ipynb failed in cell {err.cell_index} "
            f"({_first_line(err.source)!r}): {err.ename}: {evalue} — executed copy with the "
            f"traceback: {output}"
        ) from None
    except RuntimeError as err:
        # nbclient's DeadKernelError and kernel start-up timeouts are RuntimeErrors.
        raise PipelineError(
            f"notebook {name}.ipynb could not run: {type(err).__name__}: {err}"
        ) from err
    return output


def _plain(value: Any) -> Any:
    # papermill writes parameters as Python literals; paths become strings.
    return str(value) if isinstance(value, Path) else value


# nbconvert warns about every image without alt text, and the lab template cannot take one from
# the output; that warning would be printed on every `cj pipeline`, so only its errors are kept.
_NBCONVERT_LOG = logging.getLogger(f"{__name__}.nbconvert")
_NBCONVERT_LOG.setLevel(logging.ERROR)


def export_report(
    executed: str | Path, html_path: str | Path, *, title: str = "CJ batch validation report"
) -> Path:
    """Export an executed notebook to self-contained HTML without code input.

    Uses nbconvert's ``HTMLExporter`` (lab template) with ``exclude_input`` and without
    prompts; figures are the notebook's PNG outputs, embedded as base64 ``data:`` URIs.
    """
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(str(executed), as_version=4)
    exporter = HTMLExporter(
        template_name="lab",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        log=_NBCONVERT_LOG,
    )
    resources = {"metadata": {"name": title}}
    body, _ = exporter.from_notebook_node(notebook, resources=resources)
    # The lab template links require.js and MathJax from a CDN and loads Mermaid from one; the
    # report uses none of them, and a report must open offline, so remote scripts are dropped.
    body = _REMOTE_SCRIPT.sub("", body)
    html_path = Path(html_path)
    html_path.write_text(body, encoding="utf-8")
    return html_path


_REMOTE_SCRIPT = re.compile(
    r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>|"
    r"<script[^>]*>\s*(?:(?!</script>).)*?MathJax(?:(?!</script>).)*</script>|"
    # the lab template's Mermaid loader imports its library from a CDN at view time
    r"<script[^>]*>(?:(?!</script>).)*?https?://(?:(?!</script>).)*</script>",
    re.DOTALL | re.IGNORECASE,
)


def _refresh_execute_record(
    database_url: str,
    cj_batch_id: int,
    run_dir: Path,
    dataset_dir: Path | None,
    notebooks: list[Path],
) -> None:
    from cjlib.db import get_engine
    from cjlib.workflow.artefacts import write_assessment_run

    engine = get_engine(database_url)
    try:
        write_assessment_run(
            engine,
            cj_batch_id,
            run_dir,
            dataset=dataset_dir,
            extra_metadata={
                "pipeline": {
                    "notebooks": [p.name for p in notebooks],
                    "validation_report": REPORT_HTML,
                }
            },
        )
    finally:
        engine.dispose()


#: Why ``-p`` may not set a reserved parameter, and what to use instead.
_RESERVED_HINTS = {
    "run_dir": "the pipeline makes a fresh run folder for every run; use --output-dir for "
    "the folder it is made in",
    "cj_batch_id": "notebook 02 creates the batch and the pipeline passes its id on; run "
    "notebooks 03 and 04 by hand for another batch",
    "database_url": "use --database-url or CJ_DATABASE_URL for the database",
}

#: The ``cj pipeline`` option of each parameter the pipeline checks.
_OPTION_NAMES = {
    "dataset_dir": "--dataset",
    "max_comparisons": "--max-comparisons",
    "judge": "--judge",
    "batch_label": "--batch-label",
    "assignment_id": "--assignment-id",
    "course_id": "--course-id",
    "seed": "--seed",
}


def _refuse_bad_parameters(parameters: Mapping[str, Any], from_p: frozenset[str]) -> None:
    # Checked before any notebook runs, so bad input leaves no run folder and no database
    # writes behind and exits 2 instead of surfacing as a failed notebook. A value given with
    # -p is named as -p NAME, the way the user gave it.
    from cjlib.judges import JUDGE_NAMES
    from cjlib.workflow.execute import check_batch_options

    def name(key: str) -> str:
        return f"-p {key}" if key in from_p else _OPTION_NAMES[key]

    dataset_dir = Path(parameters["dataset_dir"])
    if not dataset_dir.is_dir():
        raise DatasetError(
            f"data set folder {dataset_dir} does not exist; pass --dataset with a folder that "
            "holds anchors.csv and the essays"
        )
    budget = parameters["max_comparisons"]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 2:
        raise UsageError(
            f"{name('max_comparisons')} must be an integer of at least 2 (got {budget!r})"
        )
    judge = str(parameters["judge"]).strip().lower()
    if judge not in JUDGE_NAMES:
        raise UsageError(
            f"unknown judge {judge!r} ({name('judge')}); choose one of: {', '.join(JUDGE_NAMES)}"
        )
    if "pairing" in parameters or "pairing_params" in parameters:
        from cjlib.pairing import make_strategy

        params = parameters.get("pairing_params") or {}
        if not isinstance(params, dict):
            raise UsageError(f"-p pairing_params must be a JSON object, got {params!r}")
        make_strategy(str(parameters.get("pairing", "balanced")), **params)
    from cjlib.stopping import target_grade_certainty, target_reliability

    if parameters.get("target_reliability") is not None:
        target_reliability(parameters["target_reliability"], float)
    if parameters.get("target_grade_certainty") is not None:
        target_grade_certainty(parameters["target_grade_certainty"])
    if judge == "llm":
        from cjlib.llm.settings import LLMConfig

        # A missing server or model fails here in one line, not inside notebook 02.
        LLMConfig.from_env(
            base_url=parameters.get("llm_base_url"), model=parameters.get("llm_model")
        )
    if judge == "replay" and parameters.get("replay_from") is None:
        raise UsageError("--judge replay needs --replay-from CJ_BATCH_ID (the batch to replay)")
    for key in ("assignment_id", "course_id", "batch_label"):
        if not isinstance(parameters[key], str):
            raise UsageError(f"{name(key)} must be text; got {parameters[key]!r}")
    check_batch_options(
        assignment_id=parameters["assignment_id"],
        course_id=parameters["course_id"],
        batch_label=parameters["batch_label"],
        max_comparisons=budget,
        seed=parameters["seed"],
        names={key: name(key) for key in _OPTION_NAMES},
    )


def _check_database(url: str) -> None:
    """Connect once before any kernel starts: an unusable URL is exit 2, not a failed notebook."""
    from cjlib.db import get_engine

    get_engine(url).dispose()


@contextmanager
def _kernel_database_url(url: str) -> Iterator[None]:
    """Give the kernels the real URL in ``CJ_DATABASE_URL`` while the notebooks run.

    The notebooks' parameters hold the masked URL (:func:`cjlib.db.safe_url`), so the executed
    copies in the run folder never contain the password; :func:`cjlib.notebook.fill_parameters`
    swaps it back for this variable inside the kernel, which inherits this environment.
    """
    previous = os.environ.get("CJ_DATABASE_URL")
    os.environ["CJ_DATABASE_URL"] = url
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("CJ_DATABASE_URL", None)
        else:
            os.environ["CJ_DATABASE_URL"] = previous


def import_mode(parameters: Mapping[str, Any]) -> bool:
    """Whether ``parameters`` ask notebook 02 to import a decision file (``judgements_path``)."""
    return bool(parameters.get("judgements_path"))


def _registered_scale(database_url: str, assignment_id: str) -> str:
    # The scale the import will use: the assignment's registered one, else the default. A
    # database that is not reachable or not migrated yet has none registered.
    from sqlalchemy import make_url, select
    from sqlalchemy.exc import SQLAlchemyError

    from cjlib.db import get_engine, session_scope
    from cjlib.db.models import AssessmentInstruction
    from cjlib.defaults import DEFAULT_GRADE_SCALE

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return DEFAULT_GRADE_SCALE  # connecting would create the file before anything ran
    engine = get_engine(database_url)
    try:
        with session_scope(engine) as session:
            registered = session.scalars(
                select(AssessmentInstruction.grade_scale).where(
                    AssessmentInstruction.assignment_id == assignment_id
                )
            ).one_or_none()
    except SQLAlchemyError:
        registered = None
    finally:
        engine.dispose()
    return registered or DEFAULT_GRADE_SCALE


def check_judgements(parameters: Mapping[str, Any]) -> None:
    """Read and check the decision file and anchors of import mode before any kernel starts.

    The same reading as notebook 02 (:func:`cjlib.importing.read_judgement_file` with
    ``judgements_format``, ``judgements_columns``, ``judgements_task``), then the anchors
    (:func:`cjlib.workflow.imports.check_anchor_grades`: every id appears in the decisions,
    every grade is on the assignment's scale).

    Raises
    ------
    JudgementFileError
        The file or the anchors are bad (one line naming file, rows and the fix).
    UsageError
        ``judgements_columns`` is not a mapping of names.
    """
    from cjlib.importing import read_judgement_file
    from cjlib.workflow.imports import check_anchor_grades

    columns = parameters.get("judgements_columns") or {}
    if not isinstance(columns, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in columns.items()
    ):
        raise UsageError(
            f"judgements_columns must map canonical names to source columns (got {columns!r}); "
            "pass --column canonical=source"
        )
    decisions = read_judgement_file(
        Path(parameters["judgements_path"]),
        format=str(parameters.get("judgements_format") or "auto"),
        columns=dict(columns),
        task=parameters.get("judgements_task"),
    )
    anchors = parameters.get("judgements_anchors")
    if anchors:
        scale = _registered_scale(str(parameters["database_url"]), str(parameters["assignment_id"]))
        check_anchor_grades(decisions, Path(anchors), grade_scale=scale)


def _require_import_notebook(folder: Path, declared: Mapping[str, Any]) -> None:
    # A working folder made before import mode existed would run the simulated judge and
    # silently ignore the file.
    missing = [name for name in IMPORT_PARAMETERS if name not in declared]
    if missing:
        raise UsageError(
            f"{folder / NOTEBOOKS[1]}.ipynb has no import-mode parameters ({', '.join(missing)}); "
            "refresh the notebooks with `cj init --force` or run cjlib's own from another folder"
        )


def _import_paths(parameters: dict[str, Any]) -> None:
    # Kernels run in the current folder too, but absolute paths keep the executed notebooks
    # meaningful when read elsewhere.
    for name in ("judgements_path", "judgements_anchors"):
        if parameters.get(name):
            parameters[name] = str(Path(parameters[name]).resolve())


def run_pipeline(
    *,
    database_url: str | None = None,
    assignment_id: str = DEFAULT_ASSIGNMENT_ID,
    course_id: str = DEFAULT_COURSE_ID,
    dataset: str | Path | None = None,
    batch_label: str = DEFAULT_BATCH_LABEL,
    max_comparisons: int = DEFAULT_MAX_COMPARISONS,
    seed: int = DEFAULT_SEED,
    judge: str = "simulated",
    output_dir: str | Path = "reports/runs",
    judgements: str | Path | None = None,
    judgements_anchors: str | Path | None = None,
    judgements_task: str | None = None,
    judgements_format: str = "auto",
    judgements_columns: Mapping[str, str] | None = None,
    extra_parameters: Mapping[str, Any] | None = None,
    kernel_name: str | None = None,
    progress: bool = False,
    on_notebook: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Run the four notebooks into a fresh run folder and export the validation report.

    With ``judgements`` (import mode) notebook 02 imports that decision file as the batch
    instead of judging one, notebook 01 is skipped, and the file and anchors are checked
    before any kernel starts.

    Parameters
    ----------
    database_url : str, optional
        Resolved once (argument, else ``CJ_DATABASE_URL``, else the embedded SQLite file) and
        passed to every notebook.
    assignment_id, course_id, dataset, batch_label, max_comparisons, seed, judge
        The batch to run (``dataset`` defaults to :func:`cjlib.datasets.default_dataset_dir`).
    output_dir : path
        Parent of the run folder.
    judgements : path, optional
        A human decision export (see :mod:`cjlib.importing`); notebook parameter
        ``judgements_path``.
    judgements_anchors : path, optional
        CSV/xlsx of ``essay_id, grade`` marking anchors among the file's essays; without it
        the batch has scores and reliabilities but no grade projections.
    judgements_task, judgements_format, judgements_columns
        ``task``, ``format`` and ``columns`` of :func:`cjlib.importing.read_judgement_file`.
    extra_parameters : mapping, optional
        More notebook parameters (``cj pipeline -p key=value``), each passed to every notebook
        that declares it; they override the named arguments.
    kernel_name : str, optional
        Jupyter kernel (default ``python3``, which must run this interpreter).
    progress : bool
        Show papermill's per-cell progress bars on stderr.
    on_notebook : callable, optional
        Called with each notebook's name before it runs.

    Returns
    -------
    PipelineResult

    Raises
    ------
    UsageError
        An extra parameter is declared by no notebook or is one the pipeline sets itself.
    JudgementFileError
        Import mode: the decision file or the anchors are bad (nothing was run or written).
    NotFoundError
        The notebooks are missing.
    PipelineError
        A notebook failed (naming notebook, cell and error), or notebook 02 recorded no batch.
    """
    from cjlib.datasets import default_dataset_dir

    folder = notebooks_dir()
    kernel = check_kernel(kernel_name)
    declared = {name: declared_parameters(folder / f"{name}.ipynb") for name in NOTEBOOKS}
    extra = dict(extra_parameters or {})
    reserved = sorted(set(extra) & RESERVED_PARAMETERS)
    if reserved:
        raise UsageError(
            f"-p {reserved[0]} is set by the pipeline itself: {_RESERVED_HINTS[reserved[0]]}"
        )
    known = set().union(*declared.values())
    unknown = sorted(set(extra) - known)
    if unknown:
        raise UsageError(
            f"no notebook declares parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    url = resolve_database_url(database_url)
    dataset_dir = Path(dataset).resolve() if dataset else default_dataset_dir().resolve()
    parameters: dict[str, Any] = {
        # Masked: papermill writes parameters into the executed notebooks (cells and metadata).
        "database_url": safe_url(url),
        "assignment_id": assignment_id,
        "course_id": course_id,
        "dataset_dir": str(dataset_dir),
        "batch_label": batch_label,
        "max_comparisons": max_comparisons,
        "seed": seed,
        "judge": judge,
        "judgements_path": str(judgements) if judgements else None,
        "judgements_anchors": str(judgements_anchors) if judgements_anchors else None,
        "judgements_task": judgements_task,
        "judgements_format": judgements_format,
        "judgements_columns": dict(judgements_columns or {}),
        **extra,
    }
    _refuse_bad_parameters(parameters, frozenset(extra))
    importing = import_mode(parameters)
    if importing:
        _require_import_notebook(folder, declared[NOTEBOOKS[1]])
        check_judgements(parameters)
        _import_paths(parameters)
    _check_database(url)
    run_dir = new_pipeline_run_dir(output_dir, str(parameters["batch_label"]))
    parameters["run_dir"] = str(run_dir)
    executed: list[Path] = []

    def run(name: str) -> None:
        if on_notebook is not None:
            on_notebook(name)
        executed.append(
            execute_notebook(name, run_dir, parameters, kernel_name=kernel, progress=progress)
        )

    with _kernel_database_url(url):
        if not importing:
            run(NOTEBOOKS[0])
        run(NOTEBOOKS[1])
        try:
            cj_batch_id = read_batch_record(run_dir)["cj_batch_id"]
        except NotFoundError as err:
            raise PipelineError(f"notebook {NOTEBOOKS[1]}.ipynb recorded no batch: {err}") from None
        parameters["cj_batch_id"] = cj_batch_id
        if importing:
            # The report's data set is where it finds true grades; an import has none.
            parameters["dataset_dir"] = None
        run(NOTEBOOKS[2])
        run(NOTEBOOKS[3])
    report_html = export_report(run_dir / f"{REPORT_NOTEBOOK}.ipynb", run_dir / REPORT_HTML)
    dataset_used = None if importing else Path(parameters["dataset_dir"])
    _refresh_execute_record(url, cj_batch_id, run_dir, dataset_used, executed)
    log.info("pipeline finished: %s", report_html)
    return PipelineResult(
        run_dir=run_dir,
        report_html=report_html,
        executed_notebooks=tuple(executed),
        cj_batch_id=cj_batch_id,
    )
