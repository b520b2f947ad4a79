"""The SynAlign pipeline on a tiny model: select -> predict (attribute prompting) -> curate -> align -> export,
with the scripted LLM of the SynAlign command tests for the replies; killed in every stage, it resumes to the same rows."""

from __future__ import annotations

import json
from pathlib import Path

from commands.test_synalign import fake_llm  # scripted attribute and list replies
from helpers import one_thread  # noqa: F401 - autouse fixture
from pipeline.crash import kill_in
from synthtune.commands.pipeline import pipeline

REPO = Path(__file__).resolve().parents[2]
GEN = "synthtune.lightning_modules.synalign_generation"


def sections(tiny: str) -> dict:
    generate = ["--model.init_args.backbone", tiny,
                "--model.init_args.gen_size", "3", "--model.init_args.task_description", "movie review",
                "--data.init_args.rounds", "2", "--data.init_args.batch_size", "2",
                "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.logger", "false",
                "--trainer.enable_progress_bar", "false"]
    weights = ["--model.init_args.backbone", tiny,
               "--model.init_args.hidden", "8", "--model.init_args.num_resample", "10",
               "--data.init_args.batch_syn", "8",
               "--data.init_args.batch_real", "8", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
               "--trainer.max_steps", "3", "--trainer.enable_progress_bar", "false"]
    return {
        "select": {"task": "sst2", "pool": str(REPO / "data" / "sst2" / "train.jsonl"), "pool_limit": 60,
                   "budget": 8, "featurizer": tiny, "random_trials": 1},
        "predict": {"config": str(REPO / "configs" / "synalign" / "demo_generate.yaml"), "overrides": generate},
        "curate": {"num_samples": 16, "clusters": 2, "svd_components": 4},
        "align": {"config": str(REPO / "configs" / "synalign" / "demo_weights.yaml"), "overrides": weights},
        "export": {"name": "tiny synalign"},
    }


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_synalign_pipeline_runs_and_resumes_after_a_kill_in_every_stage(tiny_llama, tmp_path, monkeypatch):
    from datasets import load_from_disk

    monkeypatch.setattr(f"{GEN}.generate_from_text", fake_llm)
    monkeypatch.chdir(tmp_path)
    config = sections(tiny_llama)
    done = pipeline(root="whole", **config)
    whole = tmp_path / "whole"
    demos = rows(whole / "select" / "demos.jsonl")
    assert len(demos) == 8 and {"cluster", "gp_variance", "pool_index"} <= set(demos[0])
    generated = rows(whole / "predict" / "rows.jsonl")
    assert generated and {r["method"] for r in generated} == {"synalign"}
    shown = {i for r in generated for i in r["demo_indices"]}
    assert shown <= {d["pool_index"] for d in demos}  # generation saw the selected demonstrations only
    aligned = rows(whole / "align" / "rows.jsonl")
    assert len(aligned) == 10 and {r["method"] for r in aligned} == {"synalign_mmd_resample"}
    # real defaults to select's demonstrations; per-label resampling keeps each label's share
    assert done["align"]["inputs"]["real"]["path"] == str(Path("whole") / "select" / "demos.jsonl")
    curated = rows(whole / "curate" / "rows.jsonl")
    assert all(r["text"] == curated[r["synthetic_index"]]["text"] for r in aligned)
    share = sum(r["label"] == 1 for r in curated) / len(curated)
    assert sum(r["label"] == 1 for r in aligned) == round(10 * share)
    assert load_from_disk(str(whole / "export" / "dataset"))["text"] == [r["text"] for r in aligned]
    assert "SynAlign MMD resampling toward `whole/select/demos.jsonl`" in (whole / "export" / "README.md").read_text()

    for number, stage in enumerate(config):
        kill_in(stage, number % 2 == 1, lambda: pipeline(root="pipe", **config), tmp_path / "pipe", monkeypatch)
    done = pipeline(root="pipe", **config)
    assert [name for name, m in done.items() if m["ran"]] == ["export"]
    for stage in ("select", "predict", "curate", "align"):
        name = "demos.jsonl" if stage == "select" else "rows.jsonl"
        assert [{k: v for k, v in r.items() if k != "params"} for r in rows(tmp_path / "pipe" / stage / name)] == \
               [{k: v for k, v in r.items() if k != "params"} for r in rows(whole / stage / name)], stage
