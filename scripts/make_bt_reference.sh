#!/bin/sh
# Regenerate the BradleyTerry2 / sirt reference fixtures used by tests/unit/test_scoring_reference.py.
# Needs R with BradleyTerry2 (Debian: apt-get install -y r-cran-bradleyterry2 r-cran-jsonlite).
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
"$PYTHON" scripts/make_bt_reference_data.py
Rscript scripts/bt_reference.R tests/fixtures/bt_reference
