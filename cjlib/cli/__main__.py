"""``python -m cjlib.cli …`` runs ``cj …``."""

from cjlib.cli.main import run

run()
