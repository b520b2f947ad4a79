#!/usr/bin/env bash
# Set up, check that every test can fail, then run the whole test suite (CPU only, nothing downloaded).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
python scripts/check_tests.py tests
python -m pytest -q "$@"
