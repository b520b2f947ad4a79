"""Streaming curation (issue 30): the same rows as the in-memory path, counts equal to brute force,
sharded input, near-dup mode, a killed run, and the datatrove engine's local executor."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from synthtune.commands import run_command
from synthtune.commands.files import report_path
from synthtune.curation.cluster_select import curate, round_robin_select
from synthtune.curation.decontaminate import is_contaminated, reference_ngrams
from synthtune.curation.hashed_ngrams import contaminated, reference_ngram_hashes
from synthtune.curation.near_dedup import NearDuplicateBands, near_duplicate_mask
from synthtune.curation.normalize import normalize_for_dedup
from synthtune.curation.streaming_curate import CurateSettings, CurationModel, streaming_curate
from synthtune.curation.streaming_input import plan_units, read_unit
from synthtune.curation.streaming_select import round_robin_streaming

REPO = Path(__file__).resolve().parents[2]
TRAIN = [json.loads(x)["question"] for x in (REPO / "data/gsm8k/train.jsonl").read_text().split("\n")[:3000] if x.strip()]
TEST = [json.loads(x)["question"] for x in (REPO / "data/gsm8k/test.jsonl").read_text().split("\n")[:300] if x.strip()]


def corpus(n: int, seed: int = 0) -> list[dict]:
    """Rows like generated questions: word swaps, case/space duplicates, a few leaked test questions."""
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.03:
            text = rng.choice(TEST)
        elif roll < 0.2 and texts:
            text = "  " + rng.choice(texts).upper()
        else:
            words = rng.choice(TRAIN).split()
            words[rng.randrange(len(words))] = rng.choice(words)
            text = " ".join(words)
        texts.append(text)
    return [{"text": t, "id": i} for i, t in enumerate(texts)]


def write_jsonl(path: Path, rows: list[dict], broken_every: int = 0) -> Path:
    lines = []
    for i, row in enumerate(rows):
        lines.append(json.dumps(row))
        if broken_every and i % broken_every == 7:
            lines.append('{"text": "cut off')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    rows = corpus(2500)
    write_jsonl(folder / "gen.jsonl", rows, broken_every=500)
    write_jsonl(folder / "ref.jsonl", [{"text": t} for t in TEST])
    return folder, rows


SETTINGS = dict(num_samples=400, n_clusters=25, svd_components=12, seed=5)
COUNTS = ("input", "broken_lines_skipped", "rows_read", "after_dedup", "duplicates_removed", "decontaminated_dropped",
          "contamination_rate", "after_decontamination", "svd_components", "clusters", "clusters_used", "selected")


def test_round_robin_streaming_is_round_robin_select():
    for trial in range(12):
        rng = np.random.default_rng(trial)
        n, k = int(rng.integers(1, 3000)), int(rng.integers(1, 40))
        labels = rng.zipf(1.6, size=n) % k if trial % 2 else rng.integers(0, k, n)
        wanted = int(rng.integers(1, n + 20))
        size = int(rng.integers(1, 500))
        streamed = round_robin_streaming(lambda: (labels[i:i + size] for i in range(0, n, size)), wanted, trial)
        assert streamed == round_robin_select(labels, wanted, trial)


def test_streaming_selects_the_in_memory_rows(small, tmp_path):
    folder, rows = small
    good = [r for r in rows]
    kept, expected = curate(good, references=TEST, **SETTINGS)
    settings = CurateSettings(reference_path=str(folder / "ref.jsonl"), **SETTINGS)
    report = streaming_curate(str(folder / "gen.jsonl"), str(tmp_path / "out.jsonl"), settings, workers=1,
                              unit_bytes=40_000)
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [r["id"] for r in kept]
    assert report["units"] > 5 and report["clusters"] == 25
    for key in COUNTS:
        if key in ("input", "broken_lines_skipped"):
            continue
        assert report[key] == expected[key], key
    assert report["broken_lines_skipped"] == 5 and report["input"] == len(rows) + 5


def test_counts_equal_brute_force(small, tmp_path):
    folder, rows = small
    settings = CurateSettings(reference_path=str(folder / "ref.jsonl"), **SETTINGS)
    report = streaming_curate(str(folder / "gen.jsonl"), str(tmp_path / "out.jsonl"), settings, workers=1,
                              unit_bytes=30_000)
    texts = [r["text"] for r in rows]
    distinct = {}
    for text in texts:
        distinct.setdefault(normalize_for_dedup(text), text)
    assert report["after_dedup"] == len(distinct)
    grams = reference_ngrams(TEST, 13)  # exact word tuples, not hashes
    brute = [t for t in distinct.values() if is_contaminated(t, grams, 13)]
    assert report["decontaminated_dropped"] == len(brute) > 0
    assert contaminated(list(distinct.values()), reference_ngram_hashes(TEST, 13), 13).sum() == len(brute)
    # chunked cluster assignment = nearest centre by brute force
    pool = [t for t in distinct.values() if not is_contaminated(t, grams, 13)]
    model = CurationModel(pool[:800], 12, 25, 0, 256)
    labels = model.labels(pool)
    from sklearn.preprocessing import normalize

    features = normalize(model.svd.transform(model.vectorizer.transform(pool))).astype(np.float32).astype(np.float64)
    distance = ((features[:, None, :] - model.kmeans.cluster_centers_[None]) ** 2).sum(-1)
    assert np.array_equal(np.bincount(labels, minlength=25), np.bincount(distance.argmin(1), minlength=25))


def test_sharded_jsonl_and_parquet_give_the_same_rows(small, tmp_path):
    folder, rows = small
    settings = CurateSettings(reference_path=str(folder / "ref.jsonl"), **SETTINGS)
    streaming_curate(str(folder / "gen.jsonl"), str(tmp_path / "one.jsonl"), settings, workers=1)
    shards = tmp_path / "shards"
    shards.mkdir()
    clean = [r for r in rows]
    write_jsonl(shards / "a-0.jsonl", clean[:900])
    pq.write_table(pa.Table.from_pylist(clean[900:1800]), shards / "a-1.parquet", row_group_size=300)
    write_jsonl(shards / "a-2.jsonl", clean[1800:])
    assert [u.kind for u in plan_units(str(shards))].count("parquet") == 3
    report = streaming_curate(str(shards), str(tmp_path / "sharded.jsonl"), settings, workers=1)
    assert (tmp_path / "sharded.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()
    assert report["broken_lines_skipped"] == 0


def test_near_dedup_drops_small_edits_only():
    base = TRAIN[0] + " " + TRAIN[1]
    edited = base.replace(base.split()[-1], "pears", 1)
    lsh = NearDuplicateBands(threshold=0.7)
    keys = lsh.keys([base, edited, TRAIN[2], TRAIN[3]])
    assert near_duplicate_mask(keys).tolist() == [False, True, False, False]


def test_near_dedup_mode_reports_its_count(small, tmp_path):
    folder, _ = small
    settings = CurateSettings(near_dedup=True, **SETTINGS)
    report = streaming_curate(str(folder / "gen.jsonl"), str(tmp_path / "out.jsonl"), settings, workers=1)
    assert 0 < report["near_duplicates_removed"] < report["after_dedup"]
    assert report["after_near_dedup"] == report["after_dedup"] - report["near_duplicates_removed"]
    assert report["output"] == 400


def test_cli_streaming_writes_the_same_report_format(small, tmp_path):
    folder, _ = small
    out_memory, out_streaming = tmp_path / "m.jsonl", tmp_path / "s.jsonl"
    common = ["--num_samples", "400", "--clusters", "25", "--svd_components", "12", "--seed", "5",
              "--decontaminate", str(folder / "ref.jsonl")]
    run_command("curate", ["--input", str(folder / "gen.jsonl"), "--output", str(out_memory), *common])
    run_command("curate", ["--input", str(folder / "gen.jsonl"), "--output", str(out_streaming), *common,
                           "--streaming", "true", "--workers", "1"])
    assert out_memory.read_text() == out_streaming.read_text()
    memory = json.loads(report_path(out_memory).read_text())
    streamed = json.loads(report_path(out_streaming).read_text())
    assert memory["executor"] == "in-memory" and streamed["executor"] == "streaming"
    assert set(memory) <= set(streamed)
    for key in COUNTS + ("num_references", "reference_path", "command"):
        assert memory[key] == streamed[key], key


KILL_SCRIPT = """
import logging, sys
from synthtune.curation.streaming_curate import CurateSettings, streaming_curate
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
if __name__ == "__main__":
    settings = CurateSettings(num_samples=400, n_clusters=25, svd_components=12, seed=5)
    streaming_curate(sys.argv[1], sys.argv[2], settings, workers=1, unit_bytes=20_000,
                     progress=lambda line: (print(line, file=sys.stderr, flush=True), __import__("time").sleep(1)))
"""


def test_killed_run_leaves_no_output_and_a_rerun_finishes(small, tmp_path):
    folder, _ = small
    out = tmp_path / "out.jsonl"
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script), str(folder / "gen.jsonl"), str(out)],
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    for line in process.stderr:
        if line.startswith("assigned"):  # scanned, fitted and assigned: kill it before the write
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not out.exists() and not report_path(out).exists()
    subprocess.run([sys.executable, str(script), str(folder / "gen.jsonl"), str(out)], check=True, cwd=REPO,
                   capture_output=True)
    reference = tmp_path / "reference.jsonl"
    streaming_curate(str(folder / "gen.jsonl"), str(reference), CurateSettings(**SETTINGS), workers=1)
    assert out.read_text() == reference.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_engine_local_executor_gives_the_streaming_rows(small, tmp_path):
    from synthtune.curation.engine_datatrove import engine_curate

    folder, _ = small
    settings = CurateSettings(reference_path=str(folder / "ref.jsonl"), **SETTINGS)
    streaming_curate(str(folder / "gen.jsonl"), str(tmp_path / "s.jsonl"), settings, workers=1, unit_bytes=60_000)
    report = engine_curate(str(folder / "gen.jsonl"), str(tmp_path / "e.jsonl"), settings, {"command": "curate"},
                           str(tmp_path / "e.jsonl.report.json"), "local", 2, unit_bytes=60_000)
    assert (tmp_path / "e.jsonl").read_text() == (tmp_path / "s.jsonl").read_text()
    assert report["executor"] == "datatrove-local" and report["units"] > 2 and report["output"] == 400
    assert not (tmp_path / "e.jsonl.work").exists()  # intermediate files go after a finished run


def test_engine_resumes_after_a_kill(small, tmp_path):
    folder, _ = small
    out, work = tmp_path / "e.jsonl", tmp_path / "work"
    args = ["--input", str(folder / "gen.jsonl"), "--output", str(out), "--num_samples", "400", "--clusters", "25",
            "--svd_components", "12", "--seed", "5", "--executor", "local", "--workers", "1", "--work_dir", str(work)]
    process = subprocess.Popen([sys.executable, "-m", "synthtune.cli", "curate", *args], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((work / "logs" / "fit" / "completions").glob("*")):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # after the scan and fit stages, before the rest
    process.wait(timeout=60)
    assert not out.exists()
    scans_done = sorted(p.name for p in (work / "logs" / "scan" / "completions").iterdir())
    assert scans_done
    result = subprocess.run([sys.executable, "-m", "synthtune.cli", "curate", *args], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "already been completed" in result.stderr  # datatrove skipped the finished tasks
    streaming_curate(str(folder / "gen.jsonl"), str(tmp_path / "s.jsonl"), CurateSettings(**SETTINGS), workers=1)
    assert out.read_text() == (tmp_path / "s.jsonl").read_text()


def test_unit_reader_matches_read_jsonl(small):
    from synthtune.records import read_jsonl

    folder, _ = small
    units = plan_units(str(folder / "gen.jsonl"), 10_000)
    texts = [t for unit in units for t in read_unit(unit, "text").texts]
    assert texts == [r["text"] for r in read_jsonl(folder / "gen.jsonl")]


def _doc_yaml() -> str:
    """The Slurm engine config shown in docs/curation.md (the first ```yaml block)."""
    text = (REPO / "docs/curation.md").read_text(encoding="utf-8")
    return text.split("```yaml\n", 1)[1].split("```", 1)[0]


FAKE_SBATCH = """#!/bin/bash
# records each submission (arguments and script) and answers like sbatch
n=$(ls "$SUBMITTED" | grep -c args)
echo "$@" > "$SUBMITTED/$n.args"
cp "${@: -1}" "$SUBMITTED/$n.slurm"
echo "Submitted batch job $((1000 + n))"
"""


def test_slurm_executor_submits_four_chained_jobs_that_finish_the_curation(small, tmp_path, monkeypatch):
    folder, _ = small
    bin_dir, submitted = tmp_path / "bin", tmp_path / "submitted"
    bin_dir.mkdir()
    submitted.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "sbatch").chmod(0o755)
    (bin_dir / "scontrol").write_text("#!/bin/bash\necho node1\n")  # `scontrol show hostnames` on one node
    (bin_dir / "scontrol").chmod(0o755)
    config = tmp_path / "slurm.yaml"
    config.write_text(_doc_yaml())
    out, work = tmp_path / "out.jsonl", tmp_path / "work"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SUBMITTED": str(submitted)}
    args = ["--input", str(folder / "gen.jsonl"), "--output", str(out), "--num_samples", "400", "--clusters", "25",
            "--svd_components", "12", "--seed", "5", "--executor", "slurm", "--engine_config", str(config),
            "--work_dir", str(work)]
    result = subprocess.run([sys.executable, "-m", "synthtune.cli", "curate", *args], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "submitted to Slurm" in result.stdout and not out.exists()
    count = len(list(submitted.glob("*.args")))
    submissions = [(submitted / f"{i}.args").read_text() + (submitted / f"{i}.slurm").read_text() for i in range(count)]
    job_of = {}
    for stage in ("scan", "fit", "assign", "write"):
        [index] = [i for i, text in enumerate(submissions) if f"logs/{stage}/executor.pik" in text]
        job_of[stage] = 1000 + index
        assert "#SBATCH --partition=cpu" in submissions[index] and "#SBATCH --time=02:00:00" in submissions[index]
    for stage, before in (("fit", "scan"), ("assign", "fit"), ("write", "assign")):  # each waits for the one before
        text = submissions[job_of[stage] - 1000]
        assert f"--dependency=afterok:{job_of[before]}" in text, stage
    # play the cluster: run each stage's array tasks in order, as Slurm would
    for stage in ("scan", "fit", "assign", "write"):
        ranks = json.loads((work / "logs" / stage / "ranks_to_run.json").read_text())
        for task in range(len(ranks)):
            subprocess.run(["launch_pickled_pipeline", str(work / "logs" / stage / "executor.pik")], cwd=REPO,
                           env={**env, "SLURM_ARRAY_TASK_ID": str(task), "RUN_OFFSET": "0",
                                "SLURM_NODELIST": "node1"}, check=True,
                           capture_output=True)
    streaming_curate(str(folder / "gen.jsonl"), str(tmp_path / "s.jsonl"), CurateSettings(**SETTINGS), workers=1)
    assert out.read_text() == (tmp_path / "s.jsonl").read_text()
    report = json.loads(report_path(out).read_text())
    assert report["executor"] == "datatrove-slurm" and report["output"] == 400


def test_cli_decontaminate_streaming_equals_in_memory(small, tmp_path):
    folder, _ = small
    out_memory, out_streaming = tmp_path / "m.jsonl", tmp_path / "s.jsonl"
    common = ["--input", str(folder / "gen.jsonl"), "--reference", str(folder / "ref.jsonl")]
    run_command("decontaminate", [*common, "--output", str(out_memory)])
    run_command("decontaminate", [*common, "--output", str(out_streaming), "--streaming", "true", "--workers", "1"])
    assert out_memory.read_text() == out_streaming.read_text()
    memory = json.loads(report_path(out_memory).read_text())
    streamed = json.loads(report_path(out_streaming).read_text())
    assert streamed["executor"] == "streaming" and set(memory) <= set(streamed)
    for key in ("input", "broken_lines_skipped", "num_references", "num_reference_ngrams", "decontaminated_dropped",
                "contamination_rate", "dropped_rows", "output"):
        assert memory[key] == streamed[key], key
