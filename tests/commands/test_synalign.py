"""SynAlign's four steps through the CLI entry points, end to end on a few hundred SST-2 rows, and
the one-line errors of the data commands."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from cli_runner import run_synthtune as run
from recorded_predictions import scores
from synthtune.errors import SynthtuneError
from synthtune.commands import run_command
from synthtune.components.encoders import featurize
from synthtune.components.synalign.coverage import kth_neighbour_scale, random_order
from synthtune.components.synalign.downstream import train_and_score


def select_main(argv):
    return run_command("synalign", ["select", *argv])


def evaluate_main(argv):
    return run_command("synalign", ["evaluate", *argv])

REPO = Path(__file__).resolve().parents[2]
GEN = "synthtune.lightning_modules.synalign_generation"
POOL = REPO / "data" / "sst2" / "train.jsonl"


def read(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def fake_llm(model, tokenizer, prompts, seeds, max_new_tokens=128, **kwargs):
    """A scripted LLM: valid JSON except for every 5th stage-1 seed; numbered lists that echo the label."""
    replies = []
    for prompt, seed in zip(prompts, seeds):
        if "JSON" in prompt:
            replies.append("Sorry, no." if seed % 5 == 0 else 'Here: {"topic": "film", "tone": "calm"}')
        else:
            label = re.search(r'labelled "([^"]+)"', prompt).group(1)
            n = int(re.search(r"from 1 to (\d+)", prompt).group(1))
            word = "wonderful lovely great" if label == "positive" else "awful boring dull"
            replies.append("\n".join(f"{k + 1}. a {word} film number {seed % 97} {k}" for k in range(n)))
    return replies




def lightning_args(root):
    return ["--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.logger", "false", "--trainer.accelerator", "cpu", "--trainer.devices", "1"]


def test_the_four_steps_end_to_end(tiny_llama, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    demos = tmp_path / "demos.jsonl"
    embedded = []  # (texts, embeddings) of every featurize call

    def recording_featurize(texts, *args, **kwargs):
        out = featurize(texts, *args, **kwargs)
        embedded.append((list(texts), out))
        return out

    monkeypatch.setattr("synthtune.commands.synalign.featurize", recording_featurize)
    # 1. GP selection of 24 demonstrations from 300 pool rows (embedder: the tiny model, for speed)
    report = select_main(["--task", "sst2", "--pool", str(POOL), "--pool_limit", "300", "--budget", "24",
                          "--featurizer", tiny_llama, "--output", str(demos), "--random_trials", "2"])
    selected = read(demos)
    assert len(selected) == 24 and sum(r["label"] == 0 for r in selected) == 12
    assert len({r["pool_index"] for r in selected}) == 24 and {"label_name", "gp_variance"} <= set(selected[0])
    # clusters of 4 (the default), one label each: 12 rows per label make 3 clusters per label
    clusters = {}
    for r in selected:
        clusters.setdefault(r["cluster"], []).append(r["label"])
    assert sorted(clusters) == list(range(6)) and all(len(v) == 4 and len(set(v)) == 1 for v in clusters.values())
    assert report["clusters"] == 6 and report["cluster_size"] == 4
    assert report == json.loads((tmp_path / "demos.jsonl.report.json").read_text())
    assert report["tau"] > 0 and report["r"] == report["tau"] and report["pool_size"] == 300
    # Coverage and covering radius, brute force: each pool point's distance to its nearest selected point.
    assert len(embedded) == 1 and len(embedded[0][0]) == 300
    texts, pool = embedded[0][0], np.asarray(embedded[0][1], dtype=np.float64)
    chosen = [pool[texts.index(r["text"])] for r in selected]
    nearest = np.array([min(np.linalg.norm(x - c) for c in chosen) for x in pool])
    inside, on_edge = nearest < report["r"] - 1e-9, np.abs(nearest - report["r"]) <= 1e-9
    assert inside.mean() <= report["coverage_gp"] <= (inside | on_edge).mean()
    assert report["covering_radius_gp"] == pytest.approx(nearest.max(), rel=1e-9)
    assert (tmp_path / "demos.jsonl.coverage.png").read_bytes()[:4] == b"\x89PNG"

    # 2. attribute prompting (scripted replies through the real module, datamodule and writer)
    monkeypatch.setattr(f"{GEN}.generate_from_text", fake_llm)
    synthetic = tmp_path / "synthetic.jsonl"
    code, err = run(["predict", "--model", f"{GEN}.SynAlignGenerationModule", "--model.init_args.backbone", tiny_llama,
                     "--model.init_args.gen_size", "3", "--model.init_args.task_description", "movie review",
                     "--data", "synthtune.datamodules.synalign_demos.DemonstrationDataModule",
                     "--data.init_args.path", str(demos), "--data.init_args.task", "sst2",
                     "--data.init_args.rounds", "5", "--writer.output_path", str(synthetic),
                     *lightning_args(tmp_path / "gen")], capsys)
    assert code == 0, err
    rows = read(synthetic)
    stats = json.loads((tmp_path / "gen" / "synalign_generation_stats.json").read_text())
    assert stats["attribute_replies"] == 30 and stats["unparsed_attributes"] > 0  # 6 clusters x 5 rounds
    assert len(rows) == stats["items_kept"] == 3 * (30 - stats["unparsed_attributes"])
    assert all(len(r["demo_indices"]) == 4 for r in rows)
    assert all(r["method"] == "synalign" and r["attributes"] == {"topic": "film", "tone": "calm"} for r in rows)

    # 3. MMD weights: fit, then predict writes weights + resampled rows
    weights_root = tmp_path / "weights"
    common = ["--model", "synthtune.lightning_modules.mmd_weight.MMDWeightModule",
              "--model.init_args.backbone", tiny_llama, "--model.init_args.num_resample", "100",
              "--data", "synthtune.datamodules.embeddings.EmbeddingDataModule",
              "--data.init_args.synthetic", str(synthetic), "--data.init_args.real", str(demos),
              "--data.init_args.batch_syn", "64", "--data.init_args.batch_real", "24", *lightning_args(weights_root)]
    code, err = run(["fit", *common, "--trainer.max_steps", "20"], capsys)
    assert code == 0, err
    ckpt = weights_root / "checkpoints" / "last.ckpt"
    assert not any("backbone" in k for k in torch.load(ckpt, weights_only=False)["state_dict"])
    code, err = run(["predict", *common, "--ckpt_path", str(ckpt)], capsys)
    assert code == 0, err
    weighted = read(weights_root / "samples.jsonl")
    assert len(weighted) == len(rows) and abs(sum(r["weight"] for r in weighted) - 1) < 1e-4
    resampled_path = weights_root / "resampled.jsonl"
    assert len(read(resampled_path)) == 100
    wreport = json.loads((weights_root / "resampled.jsonl.report.json").read_text())
    assert wreport["mmd2_weighted"] <= wreport["mmd2_uniform"] + 1e-6

    # 4. downstream evaluation: three rows, MMD before/after, a PNG
    out = tmp_path / "eval.json"
    test_labels, predictions = [], []  # of every classifier, in the order they were trained
    predict = LogisticRegression.predict

    def recording_train_and_score(x, y, x_test, y_test, *args):
        test_labels.append(list(y_test))
        return train_and_score(x, y, x_test, y_test, *args)

    monkeypatch.setattr("synthtune.commands.synalign.train_and_score", recording_train_and_score)
    monkeypatch.setattr(LogisticRegression, "predict", lambda clf, x: predictions.append(predict(clf, x)) or predictions[-1])
    evaluate_main(["--task", "sst2", "--real", str(demos), "--synthetic", str(synthetic),
                   "--resampled", str(resampled_path), "--test_limit", "100", "--featurizer", tiny_llama,
                   "--output", str(out), "--bandwidth", "mixture"])
    ev = json.loads(out.read_text())
    assert [r["train_set"] for r in ev["results"]] == ["synthetic (unweighted)", "synthetic (MMD-resampled)",
                                                         "few-shot real only"]
    assert len(test_labels) == len(predictions) == 3
    for result, labels, predicted in zip(ev["results"], test_labels, predictions):
        assert len(predicted) == 100 and set(labels) == {0, 1}
        expected = scores(list(predicted), labels)
        assert (result["accuracy"], result["macro_f1"]) == pytest.approx((expected["acc"], expected["f1"]))
    assert {"before_vs_fewshot_real", "after_vs_fewshot_real", "before_vs_test", "after_vs_test"} <= set(ev["mmd2"])
    assert Path(ev["plot"]).read_bytes()[:4] == b"\x89PNG"


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_select_sweeps_tau_and_reports_ball_and_hull_coverage_of_each_selection(tmp_path, monkeypatch):
    from synthtune.components.synalign.coverage import hull_coverage_curve, pool_projection
    from synthtune.components.synalign.gp_sampler import gp_select

    pool = write(tmp_path / "pool.jsonl", [{"text": f"row {i}", "label": i % 2} for i in range(80)])
    emb = np.random.default_rng(0).normal(size=(80, 5)).astype(np.float32)
    monkeypatch.setattr("synthtune.commands.synalign.featurize", lambda texts, *a, **k: emb[[int(t.split()[1]) for t in texts]])
    out = tmp_path / "demos.jsonl"
    report = select_main(["--task", "sst2", "--pool", str(pool), "--budget", "16", "--tau", "1.5", "--r", "1.2",
                          "--tau_sweep", "[0.5, 1, 4]", "--output", str(out), "--random_trials", "2"])
    x, labels, plane = torch.from_numpy(emb), np.arange(80) % 2, pool_projection(torch.from_numpy(emb))
    assert [row["tau"] for row in report["tau_sweep"]] == [0.75, 1.5, 6.0]
    for row in report["tau_sweep"]:
        picks = gp_select(x, 16, labels=labels, tau=row["tau"], cluster_size=4).indices
        nearest = np.array([min(np.linalg.norm(emb[i] - emb[j]) for j in picks) for i in range(80)])
        assert row["coverage_ball"] == pytest.approx(float((nearest <= 1.2).mean()))
        assert row["coverage_hull"] == pytest.approx(float(hull_coverage_curve(plane, picks)[-1]))
    # the sweep's tau = 1.5 run is the selection that was written
    assert report["tau_sweep"][1]["coverage_hull"] == pytest.approx(report["hull_coverage_gp"])
    assert report["hull_coverage_gp"] > 0 and report["hull_coverage_random"] > 0
    assert Path(report["tau_sweep_png"]).read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SynthtuneError, match="--tau_sweep must be a list of positive factors"):
        select_main(["--task", "sst2", "--pool", str(pool), "--budget", "16", "--tau_sweep", "[0, 1]",
                     "--output", str(out)])


@pytest.mark.parametrize("extra, message", [
    (["--budget", "50"], "fewer than --budget 50"),
    (["--budget", "4", "--tau", "0"], "--tau must be a number > 0"),
    (["--budget", "4", "--tau", "-1"], "--tau must be a number > 0"),
    (["--budget", "4", "--r", "-0.5"], "--r must be a number >= 0"),
])
def test_select_bad_input_is_one_line(extra, message, tmp_path):
    pool = write(tmp_path / "pool.jsonl", [{"text": f"row {i}", "label": i % 2} for i in range(10)])
    with pytest.raises(SynthtuneError, match=re.escape(message)) as info:
        select_main(["--task", "sst2", "--pool", str(pool), "--output", str(tmp_path / "o.jsonl"), *extra])
    assert "\n" not in str(info.value)


def test_select_refuses_a_label_with_too_few_points(tmp_path):
    pool = write(tmp_path / "pool.jsonl", [{"text": f"row {i}", "label": int(i == 0)} for i in range(10)])
    with pytest.raises(SynthtuneError, match="label 1 has 1 points but needs 3"):
        select_main(["--task", "sst2", "--pool", str(pool), "--budget", "6", "--output", str(tmp_path / "o.jsonl")])


def test_all_identical_pool_embeddings_are_a_one_line_error():
    with pytest.raises(SynthtuneError, match="all identical"):
        kth_neighbour_scale(torch.ones(20, 4), 3)


def test_random_baseline_keeps_the_per_label_budgets():
    labels = np.array([0] * 30 + [1] * 10)
    order = random_order(labels, {0: 5, 1: 5}, np.random.default_rng(0))
    assert len(set(order)) == 10 and sum(labels[order] == 1) == 5


def test_evaluate_rejects_labels_outside_the_task(tmp_path):
    bad = write(tmp_path / "syn.jsonl", [{"text": "x", "label": 7}])
    real = write(tmp_path / "real.jsonl", [{"text": "y", "label": 0}])
    with pytest.raises(SynthtuneError, match="outside the label set"):
        evaluate_main(["--task", "sst2", "--real", str(real), "--synthetic", str(bad)])


def test_unknown_subcommand_names_the_subcommands(capsys):
    code, err = run(["synalign", "choose"], capsys)
    assert code == 2 and "select" in err and "evaluate" in err

