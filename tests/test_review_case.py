"""Issue 32's review case, end to end through the ``synthtune`` command line: 60 product reviews (``review``,
``label``, ``stars``, ``product``; docs/your_data/reviews.csv) as CSV, JSONL, Parquet and a ``datasets``
save_to_disk folder. From each format, the whole chain: SoftSRV fit, then predict carrying ``label``; a pipeline
whose decontamination reference is the CSV and whose export card reads back with a valid ``size_categories``; DawGen
fit and predict on the user's columns; SynAlign select, generate and evaluate on them; ``export-prompt`` to PEFT,
whose loss equals the run's. Tiny model, a few steps each (about 4 CPU-seconds a format).

SynAlign's generation asks the LM for JSON attributes and numbered lists, which a tiny random model cannot write, so
its replies are scripted (``commands.test_synalign.fake_llm``, as SynAlign's own end-to-end test does); the module,
the demonstrations' data, the writer and the command line are real."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from datasets import Dataset

from cli_runner import run_synthtune_output
from commands.test_synalign import fake_llm
from helpers import REPO, one_thread  # noqa: F401 - autouse fixture

CSV = REPO / "docs" / "your_data" / "reviews.csv"
FORMATS = ["csv", "jsonl", "parquet", "save_to_disk"]
TEMPLATE = "Review of a {product} ({stars} stars): {review}"
TRAINER = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
           "log_every_n_steps": 1, "logger": False}


def reviews_as(fmt: str, folder: Path) -> str:
    """The review CSV written as ``fmt`` under ``folder``: what a user gives ``--data.init_args.path``."""
    rows = pd.read_csv(CSV)
    if fmt == "csv":
        return str(CSV)
    if fmt == "jsonl":
        rows.to_json(folder / "reviews.jsonl", orient="records", lines=True)
        return str(folder / "reviews.jsonl")
    if fmt == "parquet":
        rows.to_parquet(folder / "reviews.parquet", index=False)
        return str(folder / "reviews.parquet")
    Dataset.from_pandas(rows, preserve_index=False).save_to_disk(str(folder / "reviews"))
    return str(folder / "reviews")


def synthtune(*words: str, capsys) -> str:
    """Run ``synthtune <words>`` as a shell would; its stdout, or the failure with its stderr."""
    code, out, err = run_synthtune_output([str(w) for w in words], capsys)
    assert code == 0, f"synthtune {' '.join(map(str, words))} exited {code}: {err[-3000:]}"
    return out


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def configs(folder: Path, tiny: str) -> dict[str, Path]:
    """The tiny stand-ins of configs/softsrv/demo.yaml and configs/dawgen/demo.yaml (the CLI options do the rest)."""
    softsrv = {"seed_everything": 0, "trainer": TRAINER,
               "model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                         "init_args": {"backbone": tiny, "parameterization": "np", "prompt_length": 4, "lr": 0.05,
                                       "seed": 3, "sampling": {"max_new_tokens": 8}}},
               "data": {"class_path": "synthtune.datamodules.TextDataModule",
                        "init_args": {"path": "set-by-the-command", "batch_size": 8, "num_samples": 6}}}
    dawgen = {"seed_everything": 0, "trainer": TRAINER,
              "model": {"class_path": "synthtune.lightning_modules.DawGenModule",
                        "init_args": {"backbone": tiny, "num_labels": 2, "prompt_length": 3, "weight_mlp_size": 8,
                                      "lr": 0.05, "weight_lr": 0.05, "sampling": {"max_new_tokens": 6}}},
              "data": {"class_path": "synthtune.datamodules.LabeledDataModule",
                       "init_args": {"task": "my-reviews", "k": 4, "seed": 1, "max_length": 24, "batch_size": 4}}}
    paths = {"softsrv": folder / "softsrv.yaml", "dawgen": folder / "dawgen.yaml"}
    paths["softsrv"].write_text(yaml.safe_dump(softsrv))
    paths["dawgen"].write_text(yaml.safe_dump(dawgen))
    return paths


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_review_case_end_to_end(fmt, tiny_llama, tmp_path, monkeypatch, capsys):
    from huggingface_hub import DatasetCard

    from synthtune.api.dataset_card import SIZE_CATEGORIES

    data = reviews_as(fmt, tmp_path)
    paths = configs(tmp_path, tiny_llama)
    monkeypatch.chdir(tmp_path)
    source = pd.read_csv(CSV)

    # SoftSRV fit on the reviews through a template over three columns, then predict carrying each row's label
    synthtune("fit", "--config", paths["softsrv"], "--data.init_args.path", data,
              "--data.init_args.text_template", TEMPLATE, "--trainer.max_steps", 2,
              "--trainer.default_root_dir", "runs/my-reviews", capsys=capsys)
    synthtune("predict", "--config", "runs/my-reviews/config.yaml",
              "--ckpt_path", "runs/my-reviews/checkpoints/last.ckpt", "--data.init_args.num_samples", 6,
              "--data.init_args.carry_fields", "[label]", "--writer.output_path", "runs/my-reviews/samples.jsonl",
              capsys=capsys)
    samples = rows(tmp_path / "runs/my-reviews/samples.jsonl")
    assert len(samples) == 6
    for sample in samples:  # each sample carries its source row's label
        assert sample["label"] == source["label"][sample["context_row"]] in ("positive", "negative")

    # a pipeline: SoftSRV fit and predict, decontaminated against the CSV's reviews, exported with its card
    pipeline = {"root": "pipe",
                "fit": {"config": str(paths["softsrv"]),
                        "overrides": {"data.init_args.path": data, "data.init_args.text_template": TEMPLATE,
                                      "trainer.max_steps": 2}},
                "predict": {"overrides": {"data.init_args.num_samples": 6, "data.init_args.carry_fields": ["label"]}},
                "decontaminate": {"reference": str(CSV), "reference_field": "review", "ngram": 8},
                "export": {"name": "my reviews"}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(pipeline))
    synthtune("pipeline", "--config", "pipeline.yaml", capsys=capsys)
    report = json.loads(next((tmp_path / "pipe" / "decontaminate").glob("*.report.json")).read_text())
    assert report["num_references"] == 60 and report["broken_lines_skipped"] == 0
    card = DatasetCard.load(tmp_path / "pipe" / "export" / "README.md")
    assert card.data.size_categories == ["n<1K"] and card.data.size_categories[0] in dict(SIZE_CATEGORIES).values()
    assert card.data.pretty_name == "my reviews"
    exported = pd.read_parquet(tmp_path / "pipe" / "export" / "data.parquet")
    assert len(exported) == report["output"] == len(rows(tmp_path / report["output_path"])) > 0
    assert exported["label"].isin(["positive", "negative"]).all()  # the carried label reaches the dataset

    # DawGen on the user's columns: no renamed copy, no task folder
    synthtune("fit", "--config", paths["dawgen"], "--data.init_args.train_path", data,
              "--data.init_args.text_field", "review", "--data.init_args.label_field", "label",
              "--trainer.max_steps", 2, "--trainer.default_root_dir", "runs/dawgen", capsys=capsys)
    synthtune("predict", "--config", "runs/dawgen/config.yaml", "--ckpt_path", "runs/dawgen/checkpoints/last.ckpt",
              "--data.init_args.num_per_label", 3, "--writer.output_path", "runs/dawgen/samples.jsonl", capsys=capsys)
    labelled = rows(tmp_path / "runs/dawgen/samples.jsonl")
    assert sorted(r["label_name"] for r in labelled) == ["negative"] * 3 + ["positive"] * 3

    # SynAlign on the same columns: select demonstrations, generate from them, evaluate against the reviews
    synthtune("synalign", "select", "--pool", data, "--text_field", "review", "--label_field", "label",
              "--budget", 8, "--cluster_size", 2, "--featurizer", tiny_llama, "--random_trials", 1,
              "--output", "runs/synalign/demos.jsonl", capsys=capsys)
    demos = rows(tmp_path / "runs/synalign/demos.jsonl")
    assert len(demos) == 8 and {r["label_name"] for r in demos} == {"negative", "positive"}
    assert all(r["review"] in set(source["review"]) for r in demos)
    monkeypatch.setattr("synthtune.lightning_modules.synalign_generation.generate_from_text", fake_llm)
    synthtune("predict", "--model", "synthtune.lightning_modules.SynAlignGenerationModule",
              "--model.init_args.backbone", tiny_llama, "--model.init_args.gen_size", 3,
              "--model.init_args.task_description", "product review",
              "--data", "synthtune.datamodules.DemonstrationDataModule",
              "--data.init_args.path", "runs/synalign/demos.jsonl", "--data.init_args.text_field", "review",
              "--data.init_args.label_field", "label", "--data.init_args.rounds", 2,
              "--writer.output_path", "runs/synalign/synthetic.jsonl", "--trainer.default_root_dir", "runs/synalign",
              *[f"--trainer.{k}={str(v).lower()}" for k, v in TRAINER.items() if k != "log_every_n_steps"],
              capsys=capsys)
    synthetic = rows(tmp_path / "runs/synalign/synthetic.jsonl")
    assert synthetic and {r["label_name"] for r in synthetic} == {"negative", "positive"}
    out = synthtune("synalign", "evaluate", "--real", "runs/synalign/demos.jsonl",
                    "--synthetic", "runs/synalign/synthetic.jsonl", "--test", data, "--text_field", "review",
                    "--label_field", "label", "--featurizer", tiny_llama, "--output", "runs/synalign/eval.json",
                    capsys=capsys)
    evaluation = json.loads((tmp_path / "runs/synalign/eval.json").read_text())
    assert evaluation["test_rows"] == 60 and "real only" in out
    assert [(r["train_set"], r["rows"]) for r in evaluation["results"]] == [
        ("real only", 8), ("synthetic only (unweighted)", len(synthetic)),
        ("real + synthetic (unweighted)", 8 + len(synthetic))]

    # the SoftSRV (SS_NP) prompt to PEFT: the same loss on a review as the run's
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from synthtune.api.export_prompt import load_run
    from synthtune.components.softsrv.prefix_lm import reconstruction_loss

    run = tmp_path / "runs" / "my-reviews"
    synthtune("export-prompt", "--run", run, "--output", "prompt", capsys=capsys)
    module = load_run(run, run / "checkpoints" / "last.ckpt")[0]
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), "prompt").eval()
    tok = module.tokenizer
    text = TEMPLATE.format(**source.iloc[0].to_dict())
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
    with torch.no_grad():
        ours = reconstruction_loss(module.backbone, module.prompts(torch.zeros(1, dtype=torch.long)), ids,
                                   torch.ones_like(ids))
        theirs = peft_model(input_ids=ids, labels=ids).loss
    assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-6), (theirs, ours)
