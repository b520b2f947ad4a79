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
# The stored numbers (golden runs, pinned sampler tokens) must hold on other CPUs too: rerun those tests with
# another machine's kernels selected, ATen's portable ones and MKL's AVX2 path (scripts/golden_kernels.py
# measures every setting and records the deviations in tests/golden/kernels.json).
ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=AVX2 SYNTHTUNE_TEST_THREADS=2 python -m pytest -q -n 0 \
  -p no:cacheprovider tests/test_golden.py tests/components/test_sampling.py -k "golden or pinned"
