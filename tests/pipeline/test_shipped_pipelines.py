"""The pipelines in pipelines/*.yaml parse, and every section names options its stage really has."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from synthtune.commands import build_parser
from synthtune.commands.curate import curate
from synthtune.commands.decontaminate import decontaminate
from synthtune.commands.score import mauve
from synthtune.pipeline.stages import Context, compose, lightning_args

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "pipelines").glob("*.yaml"))
COMMANDS = {"curate": curate, "decontaminate": decontaminate, "score": mauve}


def test_the_three_pipelines_of_the_issue_or_those_shipped_exist():
    assert {"gsm8k_softsrv.yaml", "sst2_dawgen.yaml"} <= {path.name for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_pipeline_parses_and_its_stages_compose(path, monkeypatch):
    monkeypatch.chdir(REPO)
    config = build_parser("pipeline").parse_args(["--config", str(path)]).as_dict()
    assert config["root"].startswith("runs/")
    for stage, command in COMMANDS.items():
        if config.get(stage):
            assert set(config[stage]) <= set(inspect.signature(command).parameters), stage
    for stage in ("decontaminate", "score"):
        if config.get(stage):
            assert (REPO / config[stage]["reference"]).is_file()
    ctx = Context(REPO / config["root"], {k: v for k, v in config.items() if isinstance(v, dict)})
    composed = compose(lightning_args(ctx, "fit", config["fit"], ctx.folder("fit")))
    assert composed["trainer"]["default_root_dir"] == str(ctx.folder("fit"))
    assert (REPO / composed["data"]["init_args"].get("path", "data")).exists()
    if config.get("answers"):
        answers = compose(lightning_args(ctx, "answers", config["answers"], ctx.folder("answers")))
        assert answers["data"]["init_args"]["path"] == str(ctx.folder("decontaminate") / "rows.jsonl")
