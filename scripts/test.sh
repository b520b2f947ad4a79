#!/usr/bin/env bash
# Set up, check that every test can fail, then run the whole test suite (CPU only, nothing downloaded).
# Extra arguments go to pytest. Two pytest-xdist workers use both cores of a 2-core machine (each test
# runs torch on one thread); pass e.g. `-n 0` to run in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python scripts/check_tests.py tests
python -m pytest -q -n 2 "$@"
