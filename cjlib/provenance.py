"""Provenance of a run: code revision, library versions, file checksums and fresh run folders."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import re
import subprocess
from pathlib import Path

from cjlib import __version__
from cjlib.db.models import utc_now

#: Libraries whose versions shape the numbers a run produces.
_VERSIONED = ("numpy", "pandas", "scipy", "choix", "SQLAlchemy", "alembic")


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """SHA-256 hex digest of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def git_revision() -> str | None:
    """The git commit of the cjlib checkout that runs, or None when it is not a git checkout.

    Asked in the package's own folder, not the working directory, so a run started elsewhere
    (``cd /tmp && cj pipeline``) still records the code it ran; an installed wheel has none.
    """
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, str]:
    """Versions of Python, cjlib and the libraries that shape the numbers."""
    found = {"python": platform.python_version(), "cjlib": __version__}
    for name in _VERSIONED:
        try:
            found[name.lower()] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def fresh_run_dir(output_dir: str | Path, label: str, suffix: str) -> Path:
    """Create ``<output_dir>/<UTC stamp>_<label>_<suffix>`` (``_2``, ``_3``… if taken).

    Never reuses an existing folder, so an earlier run's files are never overwritten.
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "batch"
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    base = Path(output_dir) / f"{stamp}_{safe}_{suffix}"
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir(parents=True, exist_ok=False)
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}_{n}")


def new_run_dir(output_dir: str | Path, batch_label: str, cj_batch_id: int) -> Path:
    """A fresh run folder for one batch's artefacts (see :func:`fresh_run_dir`)."""
    return fresh_run_dir(output_dir, batch_label, f"batch{cj_batch_id}")
