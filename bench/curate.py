"""Benchmark of curation and scoring on this machine (a script, not a test).

    python bench/curate.py [--n 100000] [--no-write]
    python bench/curate.py --scale [--sizes 1000000,5000000,10000000] [--modes memory,streaming,local]

Builds 100K synthetic-looking GSM8K-style questions (word swaps and sentence recombination of
data/gsm8k/train.jsonl, about 20 % exact duplicates, ~1 % leaked test questions with other numbers),
then times:

1. ``synthtune curate`` to 50K rows with the paper's settings (SVD 100, k-means 700), JSONL in/out;
2. 13-gram decontamination of the 100K texts against 1.3K references (the 819 GSM8K test questions
   plus word-perturbed copies);
3. MAUVE on 5K x 5K precomputed 384-d features, 32 clusters, 3 seeds (structured Gaussian-mixture
   features, and isotropic random ones for comparison);
4. throughput of the default ``minilm`` featuriser on ~1000 texts.

Prints a table and appends (or replaces) the "## curate (bench/curate.py)" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import machine_info, machine_markdown, write_section  # noqa: E402
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SECTION = "## curate (bench/curate.py)"


def load_questions(split: str) -> list[str]:
    path = REPO / "data" / "gsm8k" / f"{split}.jsonl"
    return [json.loads(line)["question"] for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def perturb(text: str, rng: random.Random, vocabulary: list[str], swaps: int) -> str:
    """Replace ``swaps`` random words of ``text`` by random vocabulary words."""
    words = text.split()
    for _ in range(swaps):
        words[rng.randrange(len(words))] = rng.choice(vocabulary)
    return " ".join(words)


def renumber(text: str, rng: random.Random) -> str:
    """``text`` with every number replaced by another one (a leak that only digit-stripping catches)."""
    return re.sub(r"\d+", lambda _: str(rng.randint(2, 999)), text)


def build_corpus(n: int, duplicate_fraction: float = 0.2, leak_fraction: float = 0.01, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    train, test = load_questions("train"), load_questions("test")
    sentences = [s.strip() for q in train for s in re.split(r"(?<=[.?!])\s+", q) if s.strip()]
    vocabulary = [w for q in train[:3000] for w in q.split()]
    unique = int(n * (1 - duplicate_fraction))
    leaks = int(n * leak_fraction)
    texts = [renumber(rng.choice(test), rng) for _ in range(leaks)]
    while len(texts) < unique:
        base = perturb(rng.choice(train), rng, vocabulary, rng.randint(1, 4))
        if rng.random() < 0.5:  # recombine: append a sentence of another question
            base = f"{base} {rng.choice(sentences)}"
        texts.append(base)
    texts += rng.choices(texts, k=n - unique)  # duplicates of the unique texts, in linear time
    rng.shuffle(texts)
    return texts


def write_corpus(path: Path, n: int, seed: int = 0) -> Path:
    """Write :func:`build_corpus` (``n`` rows) to ``path`` as JSONL rows ``{"text": ...}``."""
    with path.open("w", encoding="utf-8") as fh:
        for text in build_corpus(n, seed=seed):
            fh.write(json.dumps({"text": text}) + "\n")
    return path


def build_references(target: int = 1300, seed: int = 0) -> list[str]:
    rng = random.Random(seed + 1)
    test = load_questions("test")
    vocabulary = [w for q in test for w in q.split()]
    extra = [perturb(rng.choice(test), rng, vocabulary, 3) for _ in range(max(0, target - len(test)))]
    return test + extra


def mixture_features(n: int, centers: np.ndarray, weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    z = rng.choice(len(centers), size=n, p=weights)
    return (centers[z] + 0.6 * rng.normal(size=(n, centers.shape[1]))).astype(np.float32)


def _mauve_version() -> str:
    try:
        from importlib.metadata import version

        return version("mauve-text")
    except Exception:  # noqa: BLE001 - only for the description
        return "not installed"



SCALE_SECTION = "## curate at scale (bench/curate.py --scale)"
MODES = {
    "in-memory": ["--streaming", "false"],
    "streaming, 2 workers": ["--streaming", "true", "--workers", "2"],
    "datatrove local, 2 workers": ["--executor", "local", "--workers", "2"],
}


def timed(command: list[str]) -> tuple[float, float, int, str, float]:
    """``command`` under ``/usr/bin/time -v``: wall seconds, peak RSS in GB (of the largest process: the
    main one or a worker), exit status, stderr tail, and CPU seconds (user + system, workers included)."""
    import subprocess

    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", result.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    seconds = 0.0
    if wall:
        for part in wall.group(1).split(":"):
            seconds = seconds * 60 + float(part)
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): (\S+)", result.stderr))
    return seconds, (int(rss.group(1)) / 1e6 if rss else float("nan")), result.returncode, result.stderr[-2000:], cpu


def quiet_cores(pause: bool):
    """Pause the background experiments (data_efficiency/curve.py) for the block, always resuming them."""
    import contextlib
    import signal
    import subprocess

    @contextlib.contextmanager
    def block():
        if not pause:
            yield
            return
        resume = lambda *_: subprocess.run(["pkill", "-CONT", "-f", "data_efficiency/curve.py"])  # noqa: E731
        previous = signal.signal(signal.SIGTERM, lambda *a: (resume(), sys.exit(143)))
        subprocess.run(["pkill", "-STOP", "-f", "data_efficiency/curve.py"])
        try:
            yield
        finally:
            resume()
            signal.signal(signal.SIGTERM, previous)

    return block()


def scale(args: argparse.Namespace) -> int:
    """Time ``synthtune curate`` (with 13-gram decontamination) at each size and mode; one run each."""
    data = Path(args.data)
    data.mkdir(parents=True, exist_ok=True)
    reference = data / "reference.jsonl"
    reference.write_text("".join(json.dumps({"text": t}) + "\n" for t in build_references(1300)), encoding="utf-8")
    import sklearn

    info = machine_info(**{"scikit-learn": sklearn.__version__})
    for n in [int(x) for x in args.sizes.split(",")]:
        rows: list[str] = []
        path = data / f"gen-{n}.jsonl"
        if not path.is_file():
            t = time.perf_counter()
            write_corpus(path, n)
            print(f"built {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.0f} s", flush=True)
        for mode in args.modes.split(","):
            name = {"memory": "in-memory", "streaming": "streaming, 2 workers", "local": "datatrove local, 2 workers"}[mode]
            out = data / f"curated-{n}-{mode}.jsonl"
            if mode == "memory" and n > args.memory_max:
                rows.append(f"| {n:,} | {name} | not run | - | - | - | - | needs more memory than this machine has "
                            f"(see the growth below) |")
                continue
            command = [sys.executable, "-m", "synthtune.cli", "curate", "--input", str(path), "--output", str(out),
                       "--num_samples", "50000", "--decontaminate", str(reference), "--seed", "0", *MODES[name]]
            with quiet_cores(not args.no_pause):
                seconds, rss, code, tail, cpu = timed(command)
            if code != 0:
                print(tail, flush=True)
                rows.append(f"| {n:,} | {name} | failed (exit {code}) | {seconds / 60:.1f} | {cpu:.0f} | {rss:.2f} | - | - |")
            else:
                report = json.loads(Path(f"{out}.report.json").read_text())
                rows.append(
                    f"| {n:,} | {name} | {seconds:.0f} | {seconds / 60:.1f} | {cpu:.0f} | {rss:.2f} | {report['output']:,} | "
                    f"after dedup {report['after_dedup']:,}, contaminated {report['decontaminated_dropped']:,}, "
                    f"clusters used {report['clusters_used']} |")
            print(rows[-1], flush=True)
            with (data / "rows.md").open("a", encoding="utf-8") as fh:  # the section keeps earlier invocations' rows
                fh.write(rows[-1] + "\n")
            rows = (data / "rows.md").read_text(encoding="utf-8").splitlines()
            lines = [SCALE_SECTION, "", machine_markdown(info),
                     "Each cell is one run of `synthtune curate --num_samples 50000 --decontaminate reference.jsonl` "
                     "(1,300 references) under `/usr/bin/time -v`, the input built by `write_corpus` (20 % exact "
                     "duplicates, 1 % renumbered test questions). The two data_efficiency experiments were paused "
                     "(SIGSTOP) during each run; other helpers' tests may have run at the same time.",
                     "", "| rows | path | wall s | wall min | CPU s (user+sys, workers too) | peak RSS GB (largest process) "
                     "| output | detail |",
                     "|---:|---|---:|---:|---:|---:|---:|---|", *rows]
            if not args.no_write:
                write_section(SCALE_SECTION, "\n".join(lines) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="synthetic texts to build (default 100000)")
    parser.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    parser.add_argument("--scale", action="store_true", help="time synthtune curate at --sizes in each of --modes")
    parser.add_argument("--sizes", default="1000000,5000000,10000000", help="rows per input (--scale)")
    parser.add_argument("--modes", default="memory,streaming,local", help="memory, streaming, local (--scale)")
    parser.add_argument("--memory-max", type=int, default=5_000_000, help="largest input the in-memory path gets")
    parser.add_argument("--data", default="/tmp/synthtune-curate-bench", help="folder for the inputs (--scale)")
    parser.add_argument("--no-pause", action="store_true", help="do not pause the data_efficiency experiments")
    args = parser.parse_args(argv)
    if args.scale:
        return scale(args)

    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    import sklearn

    info = machine_info(**{"scikit-learn": sklearn.__version__, "mauve-text": _mauve_version()})

    from synthtune.commands.curate import curate
    from synthtune.components.encoders import featurize
    from synthtune.curation.decontaminate import decontaminate
    from synthtune.curation.mauve_score import mauve_score

    results: list[dict] = []

    def record(step: str, seconds: float, target: float | None, detail: str) -> None:
        results.append({"step": step, "seconds": seconds, "target": target, "detail": detail})
        verdict = "-" if target is None else ("pass" if seconds <= target else "FAIL")
        print(f"{step}: {seconds:.2f} s ({verdict}) {detail}", flush=True)

    t = time.perf_counter()
    texts = build_corpus(args.n)
    print(f"built {len(texts)} texts ({len(set(texts))} distinct) in {time.perf_counter() - t:.1f} s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        gen, out = Path(tmp) / "gen.jsonl", Path(tmp) / "curated.jsonl"
        gen.write_text("".join(json.dumps({"text": x}) + "\n" for x in texts), encoding="utf-8")
        t = time.perf_counter()
        curate(input=str(gen), output=str(out), num_samples=50000, seed=0)
        seconds = time.perf_counter() - t
        report = json.loads(Path(f"{out}.report.json").read_text())
    record(
        f"curate {len(texts) // 1000}K -> 50K (dedup + TF-IDF/SVD-100 + MiniBatchKMeans-700 + round robin, "
        "JSONL in/out)",
        seconds, 60.0,
        f"after dedup {report['after_dedup']}, clusters used {report['clusters_used']}, output {report['output']}",
    )

    references = build_references(1300)
    t = time.perf_counter()
    result = decontaminate(texts, references, n=13)
    record(
        f"13-gram decontamination, {len(texts)} texts vs {len(references)} references",
        time.perf_counter() - t, 20.0,
        f"dropped {len(result.dropped)} ({result.contamination_rate:.2%})",
    )

    rng = np.random.default_rng(0)
    centers = rng.normal(scale=1.0, size=(50, 384))
    weights_q = rng.dirichlet(np.ones(50))
    weights_p = 0.7 * weights_q + 0.3 * rng.dirichlet(np.ones(50))
    q = mixture_features(5000, centers, weights_q, rng)
    p = mixture_features(5000, centers, weights_p, rng)
    t = time.perf_counter()
    score = mauve_score(p, q, num_clusters=32, seeds=(0, 1, 2))
    record("MAUVE 5K x 5K, 384-d structured (50-component mixture), 32 clusters, 3 seeds",
           time.perf_counter() - t, 30.0, f"MAUVE {score['mean']:.3f} ± {score['std']:.3f}")
    iso_p = rng.normal(size=(5000, 384)).astype(np.float32)
    iso_q = rng.normal(size=(5000, 384)).astype(np.float32)
    t = time.perf_counter()
    score = mauve_score(iso_p, iso_q, num_clusters=32, seeds=(0, 1, 2))
    record("MAUVE 5K x 5K, 384-d isotropic Gaussian, 32 clusters, 3 seeds",
           time.perf_counter() - t, 30.0, f"MAUVE {score['mean']:.3f} ± {score['std']:.3f}")

    sample = load_questions("train")[:1000]
    t = time.perf_counter()
    featurize(sample[:8], "minilm", cache=False)  # load the model once
    load_seconds = time.perf_counter() - t
    t = time.perf_counter()
    features = featurize(sample, "minilm", cache=False)
    seconds = time.perf_counter() - t
    record(f"minilm featurisation of {len(sample)} GSM8K questions (model loaded)", seconds, None,
           f"{len(sample) / seconds:.0f} texts/s, dim {features.shape[1]}, first load+8 texts {load_seconds:.1f} s")

    lines = [
        SECTION,
        "",
        machine_markdown(info),
        "The machine is shared with other jobs, so timings vary from run to run.",
        "",
        "| step | seconds | target | result | detail |",
        "|---|---:|---:|---|---|",
    ]
    for row in results:
        target = "-" if row["target"] is None else f"≤ {row['target']:.0f}"
        verdict = "-" if row["target"] is None else ("pass" if row["seconds"] <= row["target"] else "**fail**")
        lines.append(f"| {row['step']} | {row['seconds']:.2f} | {target} | {verdict} | {row['detail']} |")
    markdown = "\n".join(lines) + "\n"

    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(markdown))
    if not args.no_write:
        write_section(SECTION, markdown)
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
