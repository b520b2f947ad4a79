"""The pipelines in pipelines/*.yaml parse, and every section names options its stage really has."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import pytest

from synthtune.commands import build_parser
from synthtune.api.curate import curate
from synthtune.api.decontaminate import decontaminate
from synthtune.api.score import mauve
from synthtune.api.synalign import select
from synthtune.lightning_cli import compose
from synthtune.pipeline.manifest import earlier_keys, stage_key
from synthtune.pipeline.stages import PIPELINE_KEYS, Context, lightning_request

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "pipelines").glob("*.yaml"))
COMMANDS = {"curate": curate, "decontaminate": decontaminate, "score": mauve, "select": select}


def test_the_three_pipelines_of_the_issue_or_those_shipped_exist():
    assert {"gsm8k_softsrv.yaml", "sst2_dawgen.yaml", "sst2_synalign.yaml"} <= {path.name for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_pipeline_parses_and_its_stages_compose(path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = build_parser("pipeline").parse_args(["--config", str(path)]).as_dict()
    assert config["root"].startswith("runs/")
    for stage, command in COMMANDS.items():
        if config.get(stage):
            allowed = set(inspect.signature(command).parameters) | PIPELINE_KEYS.get(stage, set())
            assert set(config[stage]) <= allowed, stage
    for stage in ("decontaminate", "score"):
        if config.get(stage):
            assert (REPO / config[stage]["reference"]).is_file()
    ctx = Context(REPO / config["root"], {k: v for k, v in config.items() if isinstance(v, dict)})
    first = "fit" if config.get("fit") else "predict"
    composed = compose(lightning_request(ctx, first, config[first], ctx.folder(first)))
    assert composed["trainer"]["default_root_dir"] == str(ctx.folder(first))
    if config.get("select"):  # generation reads the selected demonstrations
        assert composed["data"]["init_args"]["path"] == str(ctx.folder("select") / "demos.jsonl")
    else:
        assert (REPO / composed["data"]["init_args"].get("path", "data")).exists()
    if config.get("align"):
        align = compose(lightning_request(ctx, "align", config["align"], ctx.folder("align") / "weights"))
        assert align["model"]["class_path"].endswith("MMDWeightModule")
        real = align["data"]["init_args"]["real"]
        assert real == str(ctx.folder("select") / "demos.jsonl") if config.get("select") else (REPO / real).is_file()
    if config.get("answers"):
        answers = compose(lightning_request(ctx, "answers", config["answers"], ctx.folder("answers")))
        assert answers["data"]["init_args"]["path"] == str(ctx.folder("decontaminate") / "rows.jsonl")


def test_overrides_as_a_list_of_words_still_compose_the_same_with_a_deprecation_warning(tmp_path, caplog):
    ctx = Context(tmp_path / "pipe", {"fit": {}})
    config = str(REPO / "configs/dawgen/rte.yaml")
    keys = {"config": config, "overrides": {"trainer.max_steps": 3, "model.init_args.lam": 0.5}}
    words = {"config": config, "overrides": ["--trainer.max_steps", "3", "--model.init_args.lam", "0.5"]}
    by_keys = compose(lightning_request(ctx, "fit", keys, ctx.folder("fit")))
    assert "deprecated" not in caplog.text
    by_words = compose(lightning_request(ctx, "fit", words, ctx.folder("fit")))
    assert by_words == by_keys and by_keys["trainer"]["max_steps"] == 3 and by_keys["model"]["init_args"]["lam"] == 0.5
    # the warning shows the mapping to write instead
    assert "fit.overrides as a list of command-line words is deprecated" in caplog.text
    assert "{trainer.max_steps: 3, model.init_args.lam: 0.5}" in caplog.text
    # the stage's own folder wins over an override, as the command line's last word did
    assert by_keys["trainer"]["default_root_dir"] == str(ctx.folder("fit"))


def test_the_stage_key_does_not_depend_on_the_overrides_form_only_on_what_they_set(tmp_path, caplog):
    ctx = Context(tmp_path / "pipe", {"fit": {}})
    config = str(REPO / "configs/dawgen/rte.yaml")
    fingerprints = {"data": "0" * 64}

    def key(overrides):
        section = {"config": config} if overrides is ... else {"config": config, "overrides": overrides}
        settings = {**section, "composed": compose(lightning_request(ctx, "fit", section, ctx.folder("fit")))}
        return stage_key(settings, fingerprints), settings

    empty = {key(form)[0] for form in ([], {}, None, ...)}
    assert len(empty) == 1
    words, _ = key(["--trainer.max_steps", "3", "--model.init_args.lam=0.5"])
    mapping, _ = key({"trainer.max_steps": 3, "model.init_args.lam": 0.5})
    assert words == mapping and mapping not in empty
    assert key({"trainer.max_steps": 4, "model.init_args.lam": 0.5})[0] != mapping
    # a stage killed under an earlier release left .started with the key of its settings as written: `[]`
    _, settings = key({})
    legacy = {**settings, "overrides": []}
    payload = json.dumps({"settings": legacy, "inputs": fingerprints}, sort_keys=True, default=str)
    assert hashlib.sha256(payload.encode("utf-8")).hexdigest() in earlier_keys(settings, fingerprints)
