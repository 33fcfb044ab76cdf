"""Pytest plugin: a small prepared database for running the packaged notebooks with nbval.

Loaded explicitly, as ``make test`` does::

    python -m pytest -p tests.nbval_setup --nbval-lax --nbval-current-env cjlib/notebooks/

nbval runs the notebooks as committed, with their default parameters, in kernels started from
this process. Before collection this plugin builds, in a temporary folder, a generated ENG5 data
set with 8 students, a migrated SQLite database with its anchors registered and one finished
batch recorded in ``run/batch.json``; then it points the kernels at them through the
environment: ``CJ_DATABASE_URL`` and ``CJ_NOTEBOOK_PARAMETERS`` (``dataset_dir``, ``run_dir``),
which fill the parameters the notebooks leave at None. So every notebook also runs on its own
(``... -p tests.nbval_setup --nbval-lax cjlib/notebooks/04_validation_report.ipynb``) and
nothing is written into the repository. Nothing happens unless nbval is switched on.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

_ENV_KEYS = ("CJ_DATABASE_URL", "CJ_NOTEBOOK_PARAMETERS")


def _nbval_enabled(config) -> bool:
    return bool(
        getattr(config.option, "nbval", False) or getattr(config.option, "nbval_lax", False)
    )


def _prepare(root: Path) -> dict[str, str]:
    from cjlib.datasets import generate_eng5_dataset
    from cjlib.db import get_engine, upgrade
    from cjlib.notebook import write_batch_record
    from cjlib.workflow import execute_batch, register_anchors

    dataset = generate_eng5_dataset(root / "eng5_nbval", seed=11, n_students=8)
    url = f"sqlite:///{root / 'cj.sqlite3'}"
    run_dir = root / "run"
    run_dir.mkdir()
    engine = get_engine(url)
    try:
        upgrade(engine)
        register_anchors(engine, assignment_id="eng5-np-2016", course_id="ENG5", dataset=dataset)
        result = execute_batch(
            engine,
            assignment_id="eng5-np-2016",
            course_id="ENG5",
            batch_label="nbval",
            max_comparisons=60,
            seed=5,
            dataset=dataset,
            output_dir=run_dir,
            callback_grace=2.0,
        )
        write_batch_record(run_dir, result)
    finally:
        engine.dispose()
    return {
        "CJ_DATABASE_URL": url,
        "CJ_NOTEBOOK_PARAMETERS": json.dumps(
            {"dataset_dir": str(dataset), "run_dir": str(run_dir)}
        ),
    }


def pytest_configure(config) -> None:
    if not _nbval_enabled(config):
        return
    root = Path(tempfile.mkdtemp(prefix="cj_nbval_"))
    config._cj_nbval = (root, {key: os.environ.get(key) for key in _ENV_KEYS})
    os.environ.update(_prepare(root))


def pytest_unconfigure(config) -> None:
    state = getattr(config, "_cj_nbval", None)
    if state is None:
        return
    root, previous = state
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    shutil.rmtree(root, ignore_errors=True)
