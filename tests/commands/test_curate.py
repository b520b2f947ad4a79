"""The curate / decontaminate / score commands end to end on small temp files, parsed as on the command line."""

import importlib.util
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from synthtune.commands import run_command
from synthtune.commands.files import report_path
from synthtune.components.encoders import register_featurizer
from synthtune.errors import SynthtuneError

REPO = Path(__file__).resolve().parents[2]
_TRAIN = (REPO / "data/gsm8k/train.jsonl").read_text(encoding="utf-8").split("\n")
QUESTIONS = [json.loads(line)["question"] for line in _TRAIN[:200]]


def _write(path: Path, rows, broken_at=()) -> Path:
    lines = [json.dumps(r) for r in rows]
    for offset, at in enumerate(sorted(broken_at)):
        lines.insert(at - 1, '{"text": "truncated' if offset % 2 == 0 else "[1, 2]")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def gen_file(tmp_path):
    rows = [{"text": q, "id": i} for i, q in enumerate(QUESTIONS[:40])]
    rows += [{"text": "  " + QUESTIONS[i].upper() + " ", "id": 100 + i} for i in range(5)]  # case/space duplicates
    return _write(tmp_path / "gen.jsonl", rows, broken_at=(3, 10))


def _report(output: Path) -> dict:
    return json.loads(report_path(output).read_text())


def test_curate_end_to_end_reports_counts(gen_file, tmp_path, caplog):
    out = tmp_path / "curated.jsonl"
    with caplog.at_level(logging.WARNING):
        run_command("curate", ["--input", str(gen_file), "--output", str(out), "--num_samples", "12",
                            "--clusters", "6", "--svd_components", "8", "--seed", "1"])
    assert "2 broken JSON line(s) at line 3, 10" in caplog.text
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert all(r["id"] < 100 for r in rows)  # duplicates were dropped, first occurrence kept
    report = _report(out)
    assert report["input"] == 47 and report["broken_lines_skipped"] == 2 and report["rows_read"] == 45
    assert report["after_dedup"] == 40 and report["duplicates_removed"] == 5
    assert report["clusters"] == 6 and 1 <= report["clusters_used"] <= 6
    assert report["svd_components"] == 8
    assert report["selected"] == report["output"] == 12
    assert report["decontaminated_dropped"] == 0 and report["reference_path"] is None
    assert report["output_path"] == str(out) and report["seed"] == 1


def test_curate_is_deterministic_for_a_seed(gen_file, tmp_path):
    args = ["--input", str(gen_file), "--num_samples", "10", "--clusters", "5", "--svd_components", "6"]
    run_command("curate", args + ["--output", str(tmp_path / "a.jsonl")])
    run_command("curate", args + ["--output", str(tmp_path / "b.jsonl")])
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_curate_strict_fails_on_broken_lines(gen_file, tmp_path):
    with pytest.raises(SynthtuneError, match="line 3, 10.*--strict"):
        run_command("curate", ["--input", str(gen_file), "--output", str(tmp_path / "o.jsonl"), "--strict"])
    assert not (tmp_path / "o.jsonl").exists()


def test_curate_missing_field(gen_file, tmp_path):
    with pytest.raises(SynthtuneError, match="lacks field.*question"):
        run_command("curate", ["--input", str(gen_file), "--output", str(tmp_path / "o.jsonl"), "--field", "question"])


def test_curate_more_samples_than_pool_warns(gen_file, tmp_path, caplog):
    out = tmp_path / "o.jsonl"
    with caplog.at_level(logging.WARNING):
        run_command("curate", ["--input", str(gen_file), "--output", str(out), "--num_samples", "500"])
    assert "asked for 500 samples but only 40 remain" in caplog.text
    assert len(out.read_text().splitlines()) == 40
    assert _report(out)["warnings"] == [
        "asked for 500 samples but only 40 remain after dedup/decontamination; keeping all"
    ]


def test_curate_fewer_rows_than_clusters_shrinks_k(gen_file, tmp_path, caplog):
    out = tmp_path / "o.jsonl"
    with caplog.at_level(logging.WARNING):
        run_command("curate", ["--input", str(gen_file), "--output", str(out), "--num_samples", "30"])  # paper k = 700
    assert "only 40 rows for 700 clusters; using 40 clusters" in caplog.text
    report = _report(out)
    assert report["clusters"] == 40 and report["clusters_requested"] == 700
    assert report["svd_components"] < 40 and report["output"] == 30


def test_curate_with_decontamination(gen_file, tmp_path):
    # Test rows whose questions reuse generated rows 5 and 7 with other numbers and punctuation.
    leaked = [QUESTIONS[5].replace(".", ";"), "".join(c if not c.isdigit() else "9" for c in QUESTIONS[7])]
    ref = _write(tmp_path / "test.jsonl", [{"question": q, "answer": "x"} for q in leaked + ["Short unrelated one?"]])
    out = tmp_path / "o.jsonl"
    run_command("curate", ["--input", str(gen_file), "--output", str(out), "--num_samples", "100",
                 "--decontaminate", str(ref), "--reference_field", "question"])
    ids = {json.loads(line)["id"] for line in out.read_text().splitlines()}
    assert 5 not in ids and 7 not in ids and len(ids) == 38
    report = _report(out)
    assert report["decontaminated_dropped"] == 2 and report["contamination_rate"] == pytest.approx(2 / 40)
    assert report["num_references"] == 3 and report["ngram"] == 13


def test_decontaminate_command(gen_file, tmp_path):
    ref = _write(tmp_path / "ref.jsonl", [{"text": QUESTIONS[1]}])
    out = tmp_path / "clean.jsonl"
    run_command("decontaminate", ["--input", str(gen_file), "--reference", str(ref), "--output", str(out)])
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert 1 not in ids and 101 not in ids  # the original and its upper-case duplicate
    assert len(ids) == 43
    report = _report(out)
    assert report["decontaminated_dropped"] == 2 and report["dropped_rows"] == [1, 41]
    assert report["broken_lines_skipped"] == 2


def test_decontaminate_empty_reference_and_same_output(gen_file, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(SynthtuneError, match="no rows"):
        run_command("decontaminate", ["--input", str(gen_file), "--reference", str(empty), "--output", str(tmp_path / "o.jsonl")])
    with pytest.raises(SynthtuneError, match="also an input"):
        run_command("decontaminate", ["--input", str(gen_file), "--reference", str(gen_file), "--output", str(gen_file)])


class HashFeaturizer:
    """Cheap bag-of-words features for command tests (no model load)."""

    name = "hash-test"

    def encode(self, texts):
        from sklearn.feature_extraction.text import HashingVectorizer

        return HashingVectorizer(n_features=32, alternate_sign=False).transform(texts).toarray().astype(np.float32)


@pytest.mark.skipif(importlib.util.find_spec("mauve") is None, reason="optional mauve-text not installed")
def test_score_mauve_writes_report_and_plot(tmp_path, monkeypatch):
    import mauve

    import synthtune.api.score  # noqa: F401 - the package shadows the module's name with the function

    commands = sys.modules["synthtune.api.score"]

    register_featurizer("hash-test", HashFeaturizer)
    featurized = []  # (p, q): what the command scored
    real_featurize = commands.featurize

    def recording_featurize(*args, **kwargs):
        featurized.append(real_featurize(*args, **kwargs))
        return featurized[-1]

    monkeypatch.setattr(commands, "featurize", recording_featurize)
    synthetic = _write(tmp_path / "synth.jsonl", [{"question": q} for q in QUESTIONS[:80]])
    reference = _write(tmp_path / "real.jsonl", [{"q": q} for q in QUESTIONS[80:200]])
    argv = ["mauve", "--synthetic", str(synthetic), "--reference", str(reference), "--field", "question",
            "--reference_field", "q", "--featurizer", "hash-test", "--clusters", "4", "--seeds", "2",
            "--kmeans_num_redo", "1", "--max_samples", "100"]
    run_command("score", argv)
    report = json.loads((tmp_path / "synth.mauve.json").read_text())
    assert report["metric"] == "mauve" and report["featurizer"] == "hash-test"
    # Each seed's score is the mauve package's own on the features the command computed.
    p, q = featurized[:2]
    assert p.shape == (80, 32) and q.shape == (100, 32)
    expected = {str(seed): mauve.compute_mauve(p_features=p, q_features=q, num_buckets=4, kmeans_num_redo=1,
                                               kmeans_max_iter=500, device_id=-1, seed=seed, verbose=False).mauve
                for seed in (0, 1)}
    assert report["per_seed"] == pytest.approx(expected)
    assert report["std"] == pytest.approx(np.std(list(expected.values())))
    assert report["mean"] == pytest.approx(np.mean(list(report["per_seed"].values())))
    assert report["num_synthetic"] == 80 and report["num_reference"] == 100 and report["clusters"] == 4
    assert (tmp_path / "synth.mauve.png").read_bytes()[:4] == b"\x89PNG"
    # Scoring a file against itself is near 1; explicit --output / --no_plot are honoured.
    out = tmp_path / "self.json"
    run_command("score", ["mauve", "--synthetic", str(synthetic), "--reference", str(synthetic), "--field", "question",
                "--featurizer", "hash-test", "--clusters", "4", "--seeds", "1", "--output", str(out), "--no_plot"])
    assert json.loads(out.read_text())["mean"] > 0.95


def test_score_mauve_input_errors(tmp_path):
    register_featurizer("hash-test", HashFeaturizer)
    small = _write(tmp_path / "s.jsonl", [{"text": q} for q in QUESTIONS[:10]])
    if importlib.util.find_spec("mauve") is not None:
        with pytest.raises(SynthtuneError, match="needs at least 64 rows per file"):
            run_command("score", ["mauve", "--synthetic", str(small), "--reference", str(small), "--featurizer", "hash-test"])
    with pytest.raises(SystemExit):
        run_command("score", ["bleu"])
