"""Files shipped inside the cjlib package, found with :mod:`importlib.resources`.

The pipeline notebooks (``cjlib/notebooks/``), the synthetic ENG5 data set
(``cjlib/sample_data/eng5_np_2016/``), the essay generator's grammar (``cjlib/essay_grammar/``)
and the working-folder scaffold (``cjlib/workspace_template/``) are package data: they are in
the wheel, so an ordinary ``pip install cjlib`` runs ``cj pipeline`` and ``cj init`` anywhere.
Nothing here looks for a source checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from cjlib.errors import NotFoundError

#: Package-data folder of the pipeline notebooks.
NOTEBOOKS = "notebooks"
#: Package-data folder of the synthetic ENG5 data set.
SAMPLE_DATASET = ("sample_data", "eng5_np_2016")
#: Package-data folder of the essay generator's grammar.
ESSAY_GRAMMAR = "essay_grammar"
#: Package-data folder of the files ``cj init`` writes besides notebooks and data.
WORKSPACE_TEMPLATE = "workspace_template"


def package_path(*parts: str) -> Path:
    """The file system path of package data ``cjlib/<parts…>``.

    Parameters
    ----------
    *parts : str
        Path components below the ``cjlib`` package folder.

    Returns
    -------
    Path
        The installed file or folder (it exists).

    Raises
    ------
    NotFoundError
        cjlib is installed in a form without plain files (e.g. a zip archive), or the data is
        missing from the installation.
    """
    resource = resources.files("cjlib").joinpath(*parts)
    if not isinstance(resource, Path):
        raise NotFoundError(
            f"cjlib's package data {'/'.join(parts)} is not a plain file ({resource!r}); "
            "install cjlib unpacked with `pip install cjlib`, not as a zip archive"
        )
    if not resource.exists():
        raise NotFoundError(
            f"cjlib's package data {resource} is missing; reinstall cjlib "
            "(`pip install --force-reinstall cjlib`)"
        )
    return resource


def packaged_notebooks_dir() -> Path:
    """The folder of the four pipeline notebooks shipped with cjlib."""
    return package_path(NOTEBOOKS)


def sample_dataset_dir() -> Path:
    """The synthetic ENG5 data set shipped with cjlib (read-only: copy it to change it)."""
    return package_path(*SAMPLE_DATASET)
