"""Working folders: a researcher's own copy of the notebooks and the sample data set.

``cj init DIR`` calls :func:`init_workspace`. The folder it makes is laid out the way
``cj pipeline`` looks for its inputs when run inside it: ``notebooks/`` (see
:func:`cjlib.pipeline.notebooks_dir`), ``data/eng5_np_2016`` (see
:func:`cjlib.datasets.default_dataset_dir`), and later ``data/cj.sqlite3`` and ``reports/runs``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from cjlib.datasets import ENG5_DATASET_DIR
from cjlib.errors import UsageError
from cjlib.package_data import (
    WORKSPACE_TEMPLATE,
    package_path,
    packaged_notebooks_dir,
    sample_dataset_dir,
)
from cjlib.pipeline import NOTEBOOKS, WORKING_NOTEBOOKS_DIR

#: The README written into a new working folder.
README = "README.md"


@dataclass(frozen=True)
class Workspace:
    """What :func:`init_workspace` wrote."""

    path: Path
    notebooks: tuple[Path, ...]
    dataset_dir: Path
    readme: Path


def _refuse_non_empty(folder: Path, force: bool) -> None:
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} exists and is not a folder; choose another path")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise UsageError(
            f"{folder} is not empty; choose a new or empty folder, or pass --force to overwrite "
            "its notebooks, sample data and README"
        )


def init_workspace(folder: str | Path, *, force: bool = False) -> Workspace:
    """Scaffold a working folder with the notebooks, the sample data set and a README.

    Parameters
    ----------
    folder : str or Path
        Folder to create. It may exist only when empty, unless ``force``.
    force : bool
        Write into a non-empty folder: the four notebooks, ``data/eng5_np_2016`` and
        ``README.md`` are replaced by fresh copies; nothing else in it is touched.

    Returns
    -------
    Workspace
        The paths written.

    Raises
    ------
    UsageError
        ``folder`` is a file, or a non-empty folder and ``force`` is false (nothing written).
    """
    root = Path(folder)
    _refuse_non_empty(root, force)
    notebooks_dir = root / WORKING_NOTEBOOKS_DIR
    notebooks_dir.mkdir(parents=True, exist_ok=True)
    source = packaged_notebooks_dir()
    notebooks = tuple(
        Path(shutil.copyfile(source / f"{name}.ipynb", notebooks_dir / f"{name}.ipynb"))
        for name in NOTEBOOKS
    )
    dataset_dir = root / ENG5_DATASET_DIR
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    # copyfile, not copy2: a copy out of a read-only site-packages must stay writable.
    shutil.copytree(sample_dataset_dir(), dataset_dir, copy_function=shutil.copyfile)
    readme = Path(shutil.copyfile(package_path(WORKSPACE_TEMPLATE, README), root / README))
    return Workspace(path=root, notebooks=notebooks, dataset_dir=dataset_dir, readme=readme)
