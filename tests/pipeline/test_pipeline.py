"""``synthtune pipeline`` on a tiny model: every stage runs, reruns skip, edits rerun what follows, kills resume."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from cli_runner import run_synthtune, run_synthtune_output
from helpers import one_thread  # noqa: F401 - autouse fixture
from pipeline.crash import kill_in
from synthtune.commands.pipeline import pipeline
from synthtune.errors import SynthtuneError
from synthtune.pipeline import ORDER
from synthtune.pipeline.lock import RootLock

QUESTIONS = [f"Tom has {i} apples and buys {i + 2} more apples at the shop. How many apples now?" for i in range(24)]


def sections(files: Path, tiny: str, **edits) -> dict:
    """A pipeline of every stage on ``tiny``; ``edits``: stage -> keys that replace the defaults."""
    config = {
        "seed_everything": 0,
        "model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                  "init_args": {"backbone": tiny, "parameterization": "mc", "prompt_length": 4, "mlp_hidden": 8,
                                "lr": 0.01, "max_new_tokens": 8, "seed": 3}},
        "data": {"class_path": "synthtune.datamodules.TextDataModule",
                 "init_args": {"path": str(files / "train.jsonl"), "text_template": "{question}", "batch_size": 4,
                               "num_samples": 12}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 4, "enable_progress_bar": False,
                    "enable_model_summary": False, "log_every_n_steps": 1},
    }
    (files / "fit.yaml").write_text(yaml.safe_dump(config))
    weights = {  # SynAlign's MMD weights on the tiny model's embeddings, label-blind (SoftSRV rows have no label)
        "seed_everything": 0,
        "model": {"class_path": "synthtune.lightning_modules.MMDWeightModule",
                  "init_args": {"backbone": tiny, "hidden": 8, "lr": 0.05, "num_resample": 6, "label_mode": "blind"}},
        "data": {"class_path": "synthtune.datamodules.EmbeddingDataModule",
                 "init_args": {"synthetic": "set-by-the-pipeline", "real": "set-by-the-pipeline",
                               "real_text_field": "question", "batch_syn": 4, "batch_real": 8}},
        "trainer": {"accelerator": "cpu", "devices": 1, "max_steps": 3, "enable_progress_bar": False,
                    "enable_model_summary": False, "log_every_n_steps": 1},
    }
    (files / "weights.yaml").write_text(yaml.safe_dump(weights))
    found = {
        "fit": {"config": str(files / "fit.yaml")},
        "contexts": {},
        "predict": {"overrides": {}},
        "curate": {"num_samples": 8, "clusters": 2, "svd_components": 4},
        "decontaminate": {"reference": str(files / "test.jsonl"), "reference_field": "question", "ngram": 8},
        "align": {"config": str(files / "weights.yaml"), "real": str(files / "train.jsonl")},
        "score": {"reference": str(files / "test.jsonl"), "reference_field": "question", "featurizer": tiny,
                  "clusters": "auto", "seeds": 1, "kmeans_num_redo": 1, "raw_field": "text",
                  "ceiling": str(files / "train.jsonl"), "ceiling_draws": 2},
        "export": {"name": "tiny softsrv"},
        "report": {"samples": 2},
    }
    for stage, keys in edits.items():
        found[stage] = {**found[stage], **keys}
    return found


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pipeline-files")
    (folder / "train.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    # the first test question is a training question: decontamination has something to find in training-like rows
    tests = [QUESTIONS[0]] + [f"Ann reads {i} pages a day for {i + 3} days. How many pages?" for i in range(9)]
    (folder / "test.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in tests))
    return folder


@pytest.fixture(scope="module")
def finished(files, tiny_llama, tmp_path_factory) -> Path:
    """A complete pipeline run through the command line, its root relative to the working folder ``base``."""
    base = tmp_path_factory.mktemp("pipeline-finished")
    config = base / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"root": "pipe", **sections(files, tiny_llama)}))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(base)
        from synthtune.commands import run_command

        run_command("pipeline", ["--config", str(config)])
    return base


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_checkpoint(found: list[dict]) -> list[dict]:
    return [{**r, "params": {k: v for k, v in r["params"].items() if k != "checkpoint"}} for r in found]


def manifests(root: Path) -> dict[str, dict]:
    return {stage: json.loads((root / stage / "manifest.json").read_text()) for stage in ORDER
            if stage not in ("select", "filter", "answers")}


def test_every_stage_runs_and_the_export_loads_with_its_provenance(finished):
    from datasets import load_from_disk

    root = finished / "pipe"
    found = manifests(root)
    assert found["predict"]["rows"] == 12
    assert found["curate"]["rows"] == 8
    assert found["decontaminate"]["rows"] == 8 - found["decontaminate"]["report"]["decontaminated_dropped"]
    assert found["predict"]["inputs"]["checkpoint"]["sha256"] == found["fit"]["outputs"]["checkpoint"]["sha256"]
    assert set(found["fit"]["versions"]) == {"synthtune", "torch", "transformers", "lightning", "datasets"}
    final = rows(root / "align" / "rows.jsonl")
    assert len(final) == 6 and {r["method"] for r in final} == {"synalign_mmd_resample"}
    decontaminated = rows(root / "decontaminate" / "rows.jsonl")
    assert all(r["text"] == decontaminated[r["synthetic_index"]]["text"] for r in final)
    dataset = load_from_disk(str(root / "export" / "dataset"))
    assert dataset["text"] == [r["text"] for r in final]
    import pandas as pd

    assert pd.read_parquet(root / "export" / "data.parquet")["text"].tolist() == [r["text"] for r in final]
    card = (root / "export" / "README.md").read_text()
    from huggingface_hub import DatasetCard

    front = DatasetCard.load(root / "export" / "README.md").data.to_dict()  # the Hub's reader accepts it
    assert front["size_categories"] == ["n<1K"] and front["task_categories"] == ["text-generation"]
    assert front["license"] == "other" and "licenses: the rows were written by" in card
    assert str(finished) not in card  # no absolute local path
    mauve = found["score"]["report"]  # mauve.json (the final rows) with the raw samples' score under "raw"
    assert "method: `synthtune.lightning_modules.SoftSRVModule`" in card
    assert f"MAUVE (final rows): {mauve['mean']:.4f} ± {mauve['std']:.4f}" in card
    raw, top = mauve["raw"], mauve["ceiling"]
    assert f"MAUVE (raw samples): {raw['mean']:.4f}" in card and f"{top['size']} real rows of `" in card
    assert "over k-means seeds only" in card
    assert "| predict | 12 |" in card and "| curate | 8 |" in card
    assert f"{found['decontaminate']['report']['decontaminated_dropped']} rows dropped" in card
    assert "num_samples: 8" in card  # every setting, curate's included
    mmd = json.loads((root / "align" / "rows.jsonl.report.json").read_text())
    assert found["align"]["report"] == mmd and found["align"]["rows"] == 6
    real = Path(found["align"]["inputs"]["real"]["path"]).name  # the card holds relative paths only
    assert re.search(rf"SynAlign MMD resampling toward `[^`]*{re.escape(real)}`: MMD² "
                     rf"{mmd['mmd2_uniform']:.5f} \(uniform\)", card)
    report = (root / "report" / "report.md").read_text()
    for picture in ("loss_curve.png", "mauve.png", "embedding_map.png"):
        assert f"]({picture})" in report and (root / "report" / picture).stat().st_size > 1000
    assert final[0]["text"].split()[0] in report  # a sample is shown
    assert "| fit |" in report and "| score |" in report
    assert f"| raw samples | 12 | 2 | {raw['mean']:.4f} ± {raw['std']:.4f} | {raw['ceiling']['mean']:.4f}" in report
    assert f"| final rows | 6 | 2 | {mauve['mean']:.4f}" in report and "over k-means seeds only" in report


def test_score_scores_every_raw_sample_and_the_final_rows_beside_as_many_real_rows(finished):
    root = finished / "pipe"
    final, raw = (json.loads((root / "score" / name).read_text()) for name in ("mauve.json", "mauve_raw.json"))
    assert (final["num_synthetic"], raw["num_synthetic"]) == (6, 12)  # the align stage's rows; all of predict's
    assert final["ceiling"]["size"] == 6 and raw["ceiling"]["size"] == 12
    # auto buckets: max(2, round(n / 10)) of the smaller set (12 raw vs 10 reference: 1 -> 2)
    assert final["clusters"] == raw["clusters"] == 2 and "round(n / 10)" in raw["clusters_rule"]
    assert len(raw["ceiling"]["per_draw"]) == 2 and raw["ceiling"]["std_draws"] >= 0
    manifest = json.loads((root / "score" / "manifest.json").read_text())
    assert manifest["report"]["raw"] == raw
    assert manifest["inputs"]["raw"]["path"].endswith("predict/rows.jsonl")


def test_gp_chosen_contexts_drive_the_predict(finished, tiny_llama):
    from synthtune.components.backbone import load_backbone
    from synthtune.components.encoders import build_context_encoder, cached_encode

    root = finished / "pipe"
    order = json.loads((root / "contexts" / "contexts.json").read_text())
    assert sorted(order) == list(range(len(QUESTIONS)))  # every training context, each once
    predicted = rows(root / "predict" / "rows.jsonl")
    assert [r["context_index"] for r in predicted] == [order[i % len(order)] for i in range(12)]
    assert [r["context_index"] for r in predicted] != list(range(12))  # not round-robin
    # the second pick is the one of largest GP variance given the first: the farthest from it in E(x)
    emb = cached_encode(build_context_encoder("backbone", load_backbone(tiny_llama)), QUESTIONS)
    distances = (emb - emb[order[0]]).norm(dim=1)
    assert distances[order[1]] == distances.max()
    manifest = json.loads((root / "predict" / "manifest.json").read_text())
    assert manifest["inputs"]["contexts"]["sha256"] == json.loads(
        (root / "contexts" / "manifest.json").read_text())["outputs"]["contexts"]["sha256"]


def test_rerun_skips_every_stage(finished, monkeypatch):
    monkeypatch.chdir(finished)
    before = {stage: (finished / "pipe" / stage / "manifest.json").stat().st_mtime_ns for stage in manifests(finished / "pipe")}
    config = yaml.safe_load((finished / "pipeline.yaml").read_text())
    done = pipeline(**config)
    assert [name for name, m in done.items() if m["ran"]] == []
    assert len(done) == 9
    assert {stage: (finished / "pipe" / stage / "manifest.json").stat().st_mtime_ns for stage in before} == before


def test_editing_curate_reruns_curate_and_what_follows_only(finished, files, tiny_llama, tmp_path, monkeypatch):
    shutil.copytree(finished / "pipe", tmp_path / "pipe")
    monkeypatch.chdir(tmp_path)
    done = pipeline(root="pipe", **sections(files, tiny_llama, curate={"num_samples": 6}))
    assert [name for name, m in done.items() if m["ran"]] == ["curate", "decontaminate", "align", "score", "export",
                                                               "report"]
    assert done["curate"]["rows"] == 6
    assert "| curate | 6 |" in (tmp_path / "pipe" / "export" / "README.md").read_text()
    from datasets import load_from_disk

    assert len(load_from_disk(str(tmp_path / "pipe" / "export" / "dataset"))) == done["align"]["rows"]


def test_killed_in_every_stage_resumes_to_the_same_rows(finished, files, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    crash = {"overrides": {"trainer.callbacks": [{"class_path": "pipeline.crash.CrashOnce",
                                                  "init_args": {"marker": str(tmp_path / "crashed")}}]}}
    config = sections(files, tiny_llama, predict=crash)
    for number, stage in enumerate(s for s in ORDER if s in config):
        if stage == "predict":  # a real crash mid-predict first: one batch of rows is on disk
            with pytest.raises(RuntimeError, match="mid-predict"):
                pipeline(root="pipe", **config)
            assert 0 < len(rows(tmp_path / "pipe" / "predict" / "rows.jsonl.rank0.partial.jsonl")) < 12
        kill_in(stage, number % 2 == 0, lambda: pipeline(root="pipe", **config), tmp_path / "pipe", monkeypatch)
    done = pipeline(root="pipe", **config)
    assert [name for name, m in done.items() if m["ran"]] == ["report"]  # killed last; every other stage resumed
    predicted = rows(tmp_path / "pipe" / "predict" / "rows.jsonl")
    assert [r["id"] for r in predicted] == list(range(12))
    # the same rows as the uninterrupted run; only the checkpoint's signature differs (the resumed fit saved again)
    assert without_checkpoint(predicted) == without_checkpoint(rows(finished / "pipe" / "predict" / "rows.jsonl"))
    final = rows(tmp_path / "pipe" / "decontaminate" / "rows.jsonl")
    assert without_checkpoint(final) == without_checkpoint(rows(finished / "pipe" / "decontaminate" / "rows.jsonl"))
    aligned = rows(tmp_path / "pipe" / "align" / "rows.jsonl")
    assert [r["synthetic_index"] for r in aligned] == [r["synthetic_index"] for r in
                                                       rows(finished / "pipe" / "align" / "rows.jsonl")]


def test_a_second_run_on_the_same_root_is_refused_in_one_line(finished, capsys, monkeypatch):
    monkeypatch.chdir(finished)
    with RootLock(finished / "pipe"):
        code, err = run_synthtune(["pipeline", "--config", str(finished / "pipeline.yaml")], capsys)
    assert code == 2
    assert err.startswith("error: another pipeline run (pid ") and err.count("\n") == 1


def test_push_to_hub_offline_is_refused_before_anything_runs(files, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SynthtuneError, match="offline"):
        pipeline(root="pipe", **sections(files, tiny_llama, export={"push_to_hub": "me/tiny"}))
    assert not (tmp_path / "pipe" / "fit").exists()


def test_stages_need_the_stages_before_them(files, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SynthtuneError, match="stage fit has not finished"):
        pipeline(root="pipe", stages="curate", **sections(files, tiny_llama))
    with pytest.raises(SynthtuneError, match="unknown stage 'aligned'"):
        pipeline(root="pipe", from_stage="aligned", **sections(files, tiny_llama))


def test_a_misspelt_lightning_setting_is_refused(files, tiny_llama, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SynthtuneError, match="unknown fit setting 'overide'"):
        pipeline(root="pipe", **sections(files, tiny_llama, fit={"overide": ["--trainer.max_steps", "1"]}))


def test_printed_config_reads_back_and_an_empty_pipeline_is_one_line(tmp_path, capsys):
    code, printed, err = run_synthtune_output(["pipeline", "--print_config"], capsys)
    assert code == 0, err
    config = yaml.safe_load(printed)
    assert set(ORDER) - {"answers", "filter"} < set(config) and config["root"] is None
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    code, err = run_synthtune(["pipeline", "--config", str(path)], capsys)
    assert code == 2 and err == "error: the pipeline needs a root folder for its stages; add `root: runs/<name>` " \
                                "to its YAML or pass --root\n"
    config["root"] = str(tmp_path / "pipe")
    path.write_text(yaml.safe_dump(config))
    code, err = run_synthtune(["pipeline", "--config", str(path)], capsys)
    assert code == 2 and err.startswith("error: the pipeline has no stage; add a section for one of select, fit, contexts, predict")


def test_the_demo_summary_reads_the_pipelines_outputs(finished, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_summary", Path(__file__).resolve().parents[2] / "scripts" / "demo_summary.py")
    demo_summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_summary)
    root = finished / "pipe"
    demo_summary.main(str(root))
    lines = capsys.readouterr().out.splitlines()
    ends = json.loads((root / "predict" / "rows.jsonl.summary.json").read_text())
    mauve = json.loads((root / "score" / "manifest.json").read_text())["report"]
    raw, top = mauve["raw"], mauve["ceiling"]
    assert lines[0].startswith("samples:        12 synthetic questions")
    assert lines[1].startswith(f"ended cleanly:  {ends['ended_at_eos']} of 12 stopped at EOS")
    assert "kept: curate 8 -> decontaminate" in lines[1] and "align 6" in lines[1]
    assert lines[2].startswith(f"outputs:        map {root / 'score' / 'embedding_map.png'}")
    assert lines[3].startswith("MAUVE vs GSM8K test questions (10 of them, ") and "1 k-means seeds" in lines[3]
    # the last lines: each score beside as many real questions scored the same way, and what the ± is
    assert lines[4] == (f"  all 12 raw samples       {raw['mean']:.3f} ± {raw['std']:.3f}   vs 12 real GSM8K train "
                        f"questions: {raw['ceiling']['mean']:.3f} ± {raw['ceiling']['std']:.3f} (draws spread "
                        f"±{raw['ceiling']['std_draws']:.3f} over 2)   [2 buckets]")
    assert lines[5].startswith(f"  6 final questions        {mauve['mean']:.3f} ± {mauve['std']:.3f}   vs 6 real")
    assert lines[6].startswith("  ± is the spread over 1 k-means seeds only; the sampling noise (which rows are "
                               "drawn) is larger at this size") and f"±{top['std_draws']:.3f} over 2 draws" in lines[6]



def test_a_run_folder_of_the_list_form_resumes_after_the_yaml_is_rewritten_as_a_mapping(files, tiny_llama, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.chdir(tmp_path)
    every = sections(files, tiny_llama)
    chosen = ("fit", "predict", "curate", "export", "report")
    words = {**{stage: every[stage] for stage in chosen}, "fit": {**every["fit"], "overrides": ["--trainer.max_steps", "4"]},
             "predict": {"overrides": []}}
    with monkeypatch.context() as earlier:  # the release before: the key hashed the overrides as written
        earlier.setattr("synthtune.pipeline.manifest.keyed_settings", dict)
        first = pipeline(root="pipe", **words)
    assert [name for name, m in first.items() if m["ran"]] == list(chosen)
    assert first["fit"]["settings"]["overrides"] == ["--trainer.max_steps", "4"]
    mapping = {**words, "fit": {**every["fit"], "overrides": {"trainer.max_steps": 4}}, "predict": {"overrides": {}}}
    done = pipeline(root="pipe", **mapping)
    assert [name for name, m in done.items() if m["ran"]] == []
    # what the overrides set still counts: another value reruns the fit and what follows
    again = pipeline(root="pipe", **{**mapping, "fit": {**every["fit"], "overrides": {"trainer.max_steps": 5}}})
    assert [name for name, m in again.items() if m["ran"]] == list(chosen)
