#!/usr/bin/env bash
# Set up, check that every test can fail, then run the whole test suite (CPU only, nothing downloaded).
# Extra arguments go to pytest. Two pytest-xdist workers use both cores of a 2-core machine (each test
# runs torch on one thread); pass e.g. `-n 0` to run in one process.
#
# `bash scripts/test.sh --engine vllm [pytest args]` sets up .venv-vllm (scripts/setup.sh --engine vllm) and runs
# the engine tests there: the vLLM engine against the native sampler, and the native sampler under the
# transformers release vLLM pins. They run in one process (each pytest-xdist worker would start its own vLLM
# engine). Elsewhere the vLLM tests are skipped with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--engine" ] && [ "${2:-}" = "vllm" ]; then
  shift 2
  bash scripts/setup.sh --engine vllm
  # shellcheck disable=SC1091
  . .venv-vllm/bin/activate
  exec python -m pytest -q -p no:cacheprovider tests/components/test_engines.py tests/components/test_engines_vllm.py \
    tests/components/test_sampling.py "$@"
fi
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
