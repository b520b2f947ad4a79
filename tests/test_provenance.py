"""SoftSRV samples keep their provenance (issue 32, item 3): each row has ``context_row``, the data row it was
generated from, and the ``carry_fields`` of that row, so a per-label set is one option away and a join back to the
data is ``rows[sample["context_row"]]``."""

from __future__ import annotations

import csv
import json

import pytest
import torch
import yaml

from helpers import REPO, one_thread  # noqa: F401 - autouse fixture
from synthtune.callbacks.jsonl_writer import item_provenance, with_provenance
from synthtune.cli import main
from synthtune.datamodules.text import TextDataModule
from synthtune.errors import SynthtuneError

CSV = REPO / "docs" / "your_data" / "reviews.csv"


def test_predict_batches_carry_the_row_and_the_chosen_columns(tiny_llama, tmp_path):
    rows = [{"q": f"question {i}", "topic": f"t{i}", "n": i} for i in range(6)]
    rows[1]["q"] = " "  # dropped as empty: row numbers stay those of the file
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dm = TextDataModule(str(path), "{q}", backbone=tiny_llama, num_samples=7, val_fraction=0.2,
                        carry_fields=["topic", "n"], predict_batch_size=7)
    dm.setup("predict")
    batch = next(iter(dm.predict_dataloader()))
    for context, provenance in zip(batch["context_index"].tolist(), batch["provenance"]):
        row = rows[provenance["context_row"]]
        assert dm.train_texts[context] == row["q"] and provenance == {"context_row": row["n"], "topic": row["topic"],
                                                                       "n": row["n"]}
    assert 1 not in {p["context_row"] for p in batch["provenance"]}


def test_carried_columns_may_not_replace_a_sample_field_and_must_exist(tiny_llama, tmp_path):
    with pytest.raises(SynthtuneError, match=r"carry_fields \['text'\] would overwrite"):
        TextDataModule(str(CSV), "{review}", backbone=tiny_llama, carry_fields=["text", "label"])
    dm = TextDataModule(str(CSV), "{review}", backbone=tiny_llama, carry_fields=["sentiment"])
    with pytest.raises(SynthtuneError, match=r"reviews.csv \(carry_fields\): row 0 lacks field\(s\) sentiment"):
        dm.setup("predict")
    batch = {"id": torch.tensor([3]), "provenance": [{"label": "x"}]}
    with pytest.raises(SynthtuneError, match=r"carried field\(s\) \['label'\] meet the field"):
        with_provenance({"id": 3, "label": 1}, item_provenance(batch)[3], "DawGenModule.predict_step")


def test_a_per_label_softsrv_set_is_one_option_away(tiny_llama, tmp_path, monkeypatch):
    config = {"seed_everything": 0,
              "trainer": {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "logger": False,
                          "enable_model_summary": False, "max_steps": 1},
              "model": {"class_path": "synthtune.lightning_modules.SoftSRVModule",
                        "init_args": {"backbone": tiny_llama, "parameterization": "mc", "prompt_length": 2,
                                      "mlp_hidden": 8, "sampling": {"max_new_tokens": 4}}},
              "data": {"class_path": "synthtune.datamodules.TextDataModule",
                       "init_args": {"path": str(CSV), "text_template": "{review}", "batch_size": 8,
                                     "num_samples": 10, "limit": 20}}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    main(["fit", "--config", "c.yaml", "--trainer.default_root_dir", "run"])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["model"]["init_args"]
    assert "temperature" not in saved and "dtype" not in saved  # issue 31: unset deprecated keys are not saved
    main(["predict", "--config", "run/config.yaml", "--ckpt_path", "run/checkpoints/last.ckpt",
          "--data.init_args.carry_fields", "[label, stars]"])
    source = list(csv.DictReader(CSV.open(encoding="utf-8")))
    samples = [json.loads(line) for line in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 10
    for sample in samples:
        row = source[sample["context_row"]]
        assert (sample["label"], sample["stars"]) == (row["label"], row["stars"])
    assert len({s["context_row"] for s in samples}) == 10  # 10 of the 20 training rows, round-robin
