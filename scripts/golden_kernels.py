"""Rerun the golden tests under other CPU kernels and thread counts; record how far their numbers move.

The stored golden numbers (tests/golden/outputs.json) must hold on any x86 CPU. A second machine differs
from this one in the kernels that sum floats: the ATen vectorisation level, MKL's instruction set and the
number of threads that split a sum. This script reruns ``tests/test_golden.py`` and the sampler's
pinned-token tests once per setting (each in its own process, since the kernels are chosen at start-up),
collects what each golden test got, and writes the
largest deviation from the stored values, per setting and test, to ``tests/golden/kernels.json``. The
tolerances in tests/test_golden.py are set from that file.

    python scripts/golden_kernels.py            # every setting; writes tests/golden/kernels.json
    python scripts/golden_kernels.py --no-write # print only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "outputs.json"
RECORD = REPO / "tests" / "golden" / "kernels.json"

#: Every test that compares with stored numbers: the golden runs, and the sampler's pinned tokens (forward
#: passes of tiny random models; a token changes only if a draw lands within rounding of a boundary).
STORED_NUMBER_TESTS = ["tests/test_golden.py", "tests/components/test_sampling.py::test_the_same_seeds_give_the_pinned_tokens",
                       "tests/components/test_sampling.py::test_the_same_seeds_give_the_pinned_tokens_without_top_p"]

#: name -> environment that selects it (every run also pins the thread count with SYNTHTUNE_TEST_THREADS).
SETTINGS: dict[str, dict[str, str]] = {
    "native, 1 thread": {"SYNTHTUNE_TEST_THREADS": "1"},
    "native, 2 threads": {"SYNTHTUNE_TEST_THREADS": "2"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default", "SYNTHTUNE_TEST_THREADS": "1"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2", "SYNTHTUNE_TEST_THREADS": "1"},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "SYNTHTUNE_TEST_THREADS": "1"},
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "SYNTHTUNE_TEST_THREADS": "1"},
    "default + SSE4_2, 2 threads": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                                    "SYNTHTUNE_TEST_THREADS": "2"},
}


def deviation(got: dict, want: dict) -> dict:
    """Largest absolute and relative loss deviation, and whether every other stored value is equal."""
    pairs = list(zip(got["losses"], want["losses"]))
    abs_dev = max(abs(a - b) for a, b in pairs)
    rel_dev = max(abs(a - b) / max(abs(b), 1e-12) for a, b in pairs)
    same = {key: got.get(key) == value for key, value in want.items() if key != "losses"}
    return {"max_abs": abs_dev, "max_rel": rel_dev, "steps": len(pairs), "equal": same}


def run_setting(env: dict[str, str], out: Path) -> int:
    full = {**os.environ, **env, "SYNTHTUNE_GOLDEN_DUMP": str(out)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", *STORED_NUMBER_TESTS]
    return subprocess.run(cmd, cwd=REPO, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print the table, do not write kernels.json")
    args = parser.parse_args()
    golden = json.loads(GOLDEN.read_text())
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, env in SETTINGS.items():
            out = Path(tmp) / str(len(results))
            code = run_setting(env, out)
            row = {"env": env, "pytest_exit": code}
            for test in sorted(golden):
                path = out / f"{test}.json"
                row[test] = deviation(json.loads(path.read_text()), golden[test]) if path.exists() else None
            results[name] = row
            cells = "  ".join(f"{t}: rel {row[t]['max_rel']:.1e}, equal {all(row[t]['equal'].values())}"
                              if row[t] else f"{t}: no result" for t in sorted(golden))
            print(f"{name:<32} exit {code}  {cells}", flush=True)
    worst = max((r[t]["max_rel"] for r in results.values() for t in golden if r.get(t)), default=float("nan"))
    print(f"largest relative loss deviation over every setting: {worst:.2e}")
    if not args.no_write:
        import torch

        record = {"date": date.today().isoformat(), "cpu": cpu_name(), "torch": torch.__version__,
                  "native_capability": torch.backends.cpu.get_cpu_capability(),
                  "largest_relative_deviation": worst, "settings": results}
        tmp_path = RECORD.with_suffix(".json.tmp")
        tmp_path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        tmp_path.replace(RECORD)
        print(f"wrote {RECORD.relative_to(REPO)}")
    sys.exit(0 if all(r["pytest_exit"] == 0 for r in results.values()) else 1)


if __name__ == "__main__":
    main()
