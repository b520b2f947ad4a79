"""Portability: no synthtune module needs ``fcntl`` (absent on Windows), and the one output lock that replaced
the two ``fcntl.flock`` copies still refuses a second process and is dropped by the OS when its holder dies."""

import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import pytest

from synthtune.errors import SynthtuneError
from synthtune.paths import OutputLock
from synthtune.pipeline.lock import RootLock

REPO = Path(__file__).resolve().parents[1]

IMPORT_ALL_WITHOUT_FCNTL = textwrap.dedent("""
    import importlib, pkgutil, sys, warnings
    sys.modules["fcntl"] = None  # as on Windows: `import fcntl` raises ImportError
    warnings.simplefilter("ignore")
    import synthtune
    for info in pkgutil.walk_packages(synthtune.__path__, "synthtune."):
        try:
            importlib.import_module(info.name)
        except ImportError as exc:
            print(info.name, exc)
""")


def test_every_module_imports_where_fcntl_does_not_exist():
    done = subprocess.run([sys.executable, "-c", IMPORT_ALL_WITHOUT_FCNTL], cwd=REPO, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    failed = done.stdout.strip().splitlines()
    if find_spec("vllm") is None:  # the vLLM engine's own module needs vLLM, on every platform
        failed = [line for line in failed if "No module named 'vllm'" not in line]
    assert failed == []
    assert "fcntl" not in "".join(p.read_text() for p in (REPO / "synthtune").rglob("*.py"))


HOLD = textwrap.dedent("""
    import sys, time
    from synthtune.paths import OutputLock
    lock = OutputLock(sys.argv[1]); lock.acquire()
    print("held", flush=True); time.sleep(600)
""")


def test_a_second_process_is_refused_with_the_holder_and_the_lock_dies_with_it(tmp_path):
    out = tmp_path / "rows.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SynthtuneError) as refused:
            OutputLock(out).acquire()
        assert str(refused.value) == (f"{out} is being written by pid {holder.pid} on "
                                      f"{__import__('socket').gethostname()} (lock {out}.lock); wait for it to "
                                      "finish, or pass another output path")
    finally:
        holder.kill()  # SIGKILL: no release runs, the OS drops the lock
        holder.wait(timeout=60)
    with OutputLock(out) as lock:  # taken at once, and the holder line is now ours
        assert Path(lock.path).read_text().startswith("pid ")
    with OutputLock(out), pytest.raises(SynthtuneError):
        OutputLock(out).acquire()  # two locks in one process contend too (one fd each)


def test_the_pipeline_lock_keeps_its_own_wording_and_creates_the_root(tmp_path):
    root = tmp_path / "not" / "yet"
    with RootLock(root):
        with pytest.raises(SynthtuneError, match=r"^another pipeline run \(pid \d+ on .+\) holds .+\.pipeline\.lock; "
                                                 r"wait for it to finish, or give this run another root$"):
            RootLock(root).acquire()
    with RootLock(root):  # released on exit
        pass
