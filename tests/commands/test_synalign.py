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


def fake_llm(model, tokenizer, prompts, seeds, settings, **kwargs):
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
    return replies, [False] * len(replies)  # (texts, hit_cap)




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

    monkeypatch.setattr("synthtune.api.synalign.featurize", recording_featurize)
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

    # 4. downstream evaluation: the rows of issue 12's table, MMD before/after, a PNG
    out = tmp_path / "eval.json"
    trained, test_labels, predictions = [], [], []  # of every classifier, in the order they were trained
    predict = LogisticRegression.predict

    def recording_train_and_score(x, y, x_test, y_test, *args):
        trained.append(np.asarray(x))
        test_labels.append(list(y_test))
        return train_and_score(x, y, x_test, y_test, *args)

    monkeypatch.setattr("synthtune.api.synalign.train_and_score", recording_train_and_score)
    monkeypatch.setattr(LogisticRegression, "predict", lambda clf, x: predictions.append(predict(clf, x)) or predictions[-1])
    evaluate_main(["--task", "sst2", "--real", str(demos), "--synthetic", str(synthetic),
                   "--resampled", str(resampled_path), "--test_limit", "100", "--featurizer", tiny_llama,
                   "--output", str(out), "--bandwidth", "mixture"])
    ev = json.loads(out.read_text())
    assert [(r["train_set"], r["rows"]) for r in ev["results"]] == [
        ("real only", 24), ("synthetic only (unweighted)", len(rows)), ("real + synthetic (unweighted)", 24 + len(rows)),
        ("synthetic only (SynAlign, MMD-resampled)", 100), ("real + synthetic (SynAlign, MMD-resampled)", 124),
        ("real + synthetic (random same-size subset, control)", 124)]
    assert len(test_labels) == len(predictions) == 6
    for result, labels, predicted in zip(ev["results"], test_labels, predictions):
        assert len(predicted) == 100 and set(labels) == {0, 1}
        expected = scores(list(predicted), labels)
        assert (result["accuracy"], result["macro_f1"]) == pytest.approx((expected["acc"], expected["f1"]))
    # the mixed sets are the real rows' embeddings followed by the synthetic ones (all, resampled, control)
    real_x, syn_x, res_x = trained[0], trained[1], trained[3]
    assert np.array_equal(trained[2], np.vstack([real_x, syn_x])) and np.array_equal(trained[4], np.vstack([real_x, res_x]))
    control = trained[5][24:]
    assert np.array_equal(trained[5][:24], real_x) and len(control) == 100
    assert all(any(np.array_equal(c, s) for s in syn_x) for c in control)  # drawn from the unweighted synthetic rows
    assert {"before_vs_fewshot_real", "after_vs_fewshot_real", "before_vs_test", "after_vs_test",
            "control_vs_test"} <= set(ev["mmd2"])
    assert Path(ev["plot"]).read_bytes()[:4] == b"\x89PNG"


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_select_sweeps_tau_and_reports_ball_and_hull_coverage_of_each_selection(tmp_path, monkeypatch):
    from synthtune.components.synalign.coverage import hull_coverage_curve, pool_projection
    from synthtune.components.synalign.gp_sampler import gp_select

    pool = write(tmp_path / "pool.jsonl", [{"text": f"row {i}", "label": i % 2} for i in range(80)])
    emb = np.random.default_rng(0).normal(size=(80, 5)).astype(np.float32)
    monkeypatch.setattr("synthtune.api.synalign.featurize", lambda texts, *a, **k: emb[[int(t.split()[1]) for t in texts]])
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



def test_evaluate_can_train_a_soft_prompt_per_training_set(tiny_llama, tmp_path, monkeypatch):
    from recorded_predictions import record_test_predictions

    real = write(tmp_path / "real.jsonl", [{"text": f"real {'good' if i % 2 else 'bad'} film {i}", "label": i % 2}
                                           for i in range(6)])
    syn = write(tmp_path / "syn.jsonl", [{"text": f"a {'great' if i % 2 else 'dull'} movie {i}", "label": i % 2}
                                         for i in range(10)])
    res = write(tmp_path / "res.jsonl", [{"text": f"a {'great' if i % 2 else 'dull'} movie {i}", "label": i % 2,
                                          "params": {"replace": False}} for i in (1, 2, 5, 6)])
    config = tmp_path / "pt.yaml"
    config.write_text(json.dumps({
        "model": {"class_path": "synthtune.lightning_modules.PromptTuningModule",
                  "init_args": {"backbone": tiny_llama, "template": "{text} It was", "label_words": [" terrible", " great"],
                                "multi_token_labels": True, "prompt_length": 3, "lr": 0.05}},
        "data": {"class_path": "synthtune.datamodules.FewShotDataModule",
                 "init_args": {"task": "sst2", "batch_size": 4, "eval_batch_size": 8}}, "trainer": {"max_steps": 50}}))
    trained = []  # (root, training texts) per soft prompt
    original_fit = __import__("lightning").pytorch.Trainer.fit

    def recording_fit(trainer, model, datamodule=None, **kwargs):
        datamodule.setup("fit")
        trained.append((Path(trainer.default_root_dir).name, sorted(r["text"] for r in datamodule.train_real),
                        trainer.max_steps))
        return original_fit(trainer, model, datamodule=datamodule, **kwargs)

    monkeypatch.setattr("lightning.pytorch.Trainer.fit", recording_fit)
    runs = record_test_predictions(monkeypatch)
    out = tmp_path / "eval.json"
    evaluate_main(["--task", "sst2", "--real", str(real), "--synthetic", str(syn), "--resampled", str(res),
                   "--classifier", "prompt_tuning", "--prompt_tuning_config", str(config), "--prompt_tuning_steps", "2",
                   "--test_limit", "12", "--featurizer", tiny_llama, "--output", str(out)])
    ev = json.loads(out.read_text())
    assert "soft-prompt tuning" in ev["classifier"] and len(ev["results"]) == 6 and len(trained) == 6
    real_texts = sorted(json.loads(line)["text"] for line in real.read_text().splitlines())
    by_root = {root: texts for root, texts, steps in trained}
    assert all(steps == 2 for _, _, steps in trained)
    assert by_root["real_only"] == real_texts
    assert by_root["real_synthetic_synalign_mmd_resampled"] == sorted(real_texts + [f"a {'great' if i % 2 else 'dull'} movie {i}"
                                                                                    for i in (1, 2, 5, 6)])
    control = [t for t in by_root["real_synthetic_random_same_size_subset_control"] if t not in real_texts]
    assert len(control) == len(set(control)) == 4  # params.replace false: a subset without repeats
    for result in ev["results"]:
        root = out.with_name("eval_prompt_tuning") / re.sub(r"[^a-z0-9]+", "_", result["train_set"].lower()).strip("_")
        predicted, labels = runs[str(root)]
        assert len(labels) == 12
        expected = scores(predicted, labels)
        assert (result["accuracy"], result["macro_f1"]) == pytest.approx((expected["acc"], expected["f1"]), abs=1e-6)


def test_prompt_tuning_classifier_reads_a_task_config_as_fit_composes_it():
    from synthtune.api.synalign_prompt_tuning import PromptTuningClassifier

    # configs/prompt_tuning/rte.yaml only names the task; the prompt, steps and batch sizes come from base.yaml
    tuner = PromptTuningClassifier.from_config(str(REPO / "configs/prompt_tuning/rte.yaml"), None, seed=3)
    assert (tuner.init_args["prompt_length"], tuner.init_args["optimizer"], tuner.steps) == (100, "sgd", 1000)
    assert (tuner.batch_size, tuner.eval_batch_size, tuner.seed) == (8, 32, 3)


def test_evaluate_refuses_a_config_that_is_not_prompt_tuning(tmp_path):
    real = write(tmp_path / "real.jsonl", [{"text": "x", "label": 0}, {"text": "y", "label": 1}])
    with pytest.raises(SynthtuneError, match="not a PromptTuningModule"):
        evaluate_main(["--task", "sst2", "--real", str(real), "--synthetic", str(real), "--classifier", "prompt_tuning",
                       "--prompt_tuning_config", str(REPO / "configs/synalign/sst2_weights.yaml")])


def test_select_takes_a_csv_pool_with_its_own_columns_and_never_picks_a_text_twice(tmp_path):
    """No task folder: the labels come from the pool; repeated texts are dropped before the GP picks, so a cluster of
    nearest neighbours cannot hold the same text twice (issue 32, item 2)."""
    texts = {"negative": ["awful film", "boring and slow", "a dull mess"],
             "positive": ["lovely film", "a warm delight", "great acting"]}
    rows = [{"review": t, "sentiment": name, "stars": str(i)} for name, group in texts.items()
            for i, t in enumerate(group)] * 3
    pool = tmp_path / "pool.csv"
    pool.write_text("review,sentiment,stars\n" + "".join(f"{r['review']},{r['sentiment']},{r['stars']}\n"
                                                          for r in rows))
    out = tmp_path / "demos.jsonl"
    report = select_main(["--pool", str(pool), "--text_field", "review", "--label_field", "sentiment",
                          "--budget", "6", "--cluster_size", "3", "--output", str(out)])
    picked = read(out)
    assert sorted(r["text"] for r in picked) == sorted(t for group in texts.values() for t in group)
    assert len(picked) == 6 and all(r["label_name"] == r["sentiment"] and r["review"] == r["text"] for r in picked)
    assert report["pool_size"] == 6 and report["pool_repeats_dropped"] == 12
    assert report["budgets"] == {"negative": 3, "positive": 3}


def test_select_without_a_task_or_a_pool_is_one_line(tmp_path):
    with pytest.raises(SynthtuneError, match="needs --task .* or --pool"):
        select_main(["--budget", "2", "--output", str(tmp_path / "o.jsonl")])


def test_evaluate_takes_rows_of_your_own_by_their_columns(tiny_llama, tmp_path):
    """No task folder: real and test rows are a CSV's own columns, the label names come from the real rows, and
    the synthetic rows are a generator's text/label (issue 32)."""
    def csv(path, rows):
        path.write_text("review,sentiment\n" + "".join(f"{t},{s}\n" for t, s in rows))
        return path

    words = {"negative": ["awful", "dull", "boring", "slow"], "positive": ["lovely", "warm", "great", "fine"]}
    real = csv(tmp_path / "real.csv", [(f"a {w} film", name) for name, ws in words.items() for w in ws[:2]])
    test = csv(tmp_path / "test.csv", [(f"the {w} show", name) for name, ws in words.items() for w in ws])
    syn = write(tmp_path / "syn.jsonl", [{"text": f"one {w} movie", "label": i, "label_name": name}
                                         for i, (name, ws) in enumerate(words.items()) for w in ws])
    out = tmp_path / "eval.json"
    report = evaluate_main(["--real", str(real), "--synthetic", str(syn), "--test", str(test), "--text_field",
                            "review", "--label_field", "sentiment", "--featurizer", tiny_llama, "--output", str(out)])
    assert report["task"] == "real" and report["test_rows"] == 8
    rows = {r["train_set"]: r for r in report["results"]}
    assert rows["real only"]["rows"] == 4 and rows["real only"]["labels"] == 2
    assert rows["synthetic only (unweighted)"]["rows"] == 8 and rows["synthetic only (unweighted)"]["labels"] == 2
    assert json.loads(out.read_text())["results"] == report["results"]
    with pytest.raises(SynthtuneError, match="needs --test"):
        evaluate_main(["--real", str(real), "--synthetic", str(syn), "--text_field", "review"])
    with pytest.raises(SynthtuneError, match="lacks column.*review"):  # the synthetic rows are read by text, not review
        evaluate_main(["--real", str(syn), "--synthetic", str(syn), "--test", str(test), "--text_field", "review",
                       "--label_field", "sentiment", "--label_names", "[negative, positive]"])
