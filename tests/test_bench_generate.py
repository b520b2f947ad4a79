"""bench/generate.py on the tiny model: every path gets a row, and --compile adds the compiled sampler's row
(torch.compile itself is tested in tests/components/test_backbone.py; here it is recorded, not run)."""

import re

from bench import generate
from synthtune.components import backbone


def test_compile_adds_a_timed_row_after_its_warm_up(tiny_llama, capsys, monkeypatch):
    compiled = []
    monkeypatch.setattr(backbone, "compile_backbone", compiled.append)
    monkeypatch.setattr(backbone, "_loaded", {})  # a compiled tiny model loaded by another test would be reused
    assert generate.main(["--backbone", tiny_llama, "--batches", "2", "--max-new-tokens", "5", "--prompt-length", "2",
                          "--compile", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert len(compiled) == 1 and generate.COMPILE_SECTION in out
    rows = re.findall(r"^\| (synthtune|hf generate|synthtune, torch\.compile) \| 2 \| 4 \| ([0-9]+) \| ([0-9.]+) \|",
                      out, flags=re.M)
    assert [r[0] for r in rows] == ["synthtune", "synthtune, torch.compile", "hf generate"]
    assert len({r[1] for r in rows}) == 1  # every path generated the same tokens (the regex reads the warm-up column)


def test_layouts_cross_weights_and_sampler(tiny_llama, capsys, monkeypatch):
    monkeypatch.setattr(backbone, "_loaded", {})
    assert generate.main(["--backbone", tiny_llama, "--batches", "2", "--max-new-tokens", "5", "--prompt-length", "2",
                          "--layouts", "--no-write"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\| ([a-z ,-]+) \| 2 \| 4 \| ([0-9]+) \|", out, flags=re.M)
    assert [r[0] for r in rows] == ["synthtune", "synthtune, row-major weights", "hf generate",
                                    "hf generate, column-major weights"]
    assert len({r[1] for r in rows}) == 1
    # the loader's model stays column-major: the HF peer ran on a row-major copy
    assert not backbone.load_backbone(tiny_llama).model.base_model.layers[0].mlp.up_proj.weight.is_contiguous()


def test_samples_gives_every_batch_size_the_same_rows(tiny_llama, capsys, monkeypatch):
    monkeypatch.setattr(backbone, "_loaded", {})
    assert generate.main(["--backbone", tiny_llama, "--batches", "2", "4", "--samples", "6", "--max-new-tokens", "5",
                          "--prompt-length", "2", "--skip-hf-above", "0", "--no-write"]) == 0
    rows = re.findall(r"^\| synthtune \| ([24]) \| ([0-9]+) \| ([0-9]+) \|", capsys.readouterr().out, flags=re.M)
    assert [r[0] for r in rows] == ["2", "4"] and {r[1:] for r in rows} == {("6", rows[0][2])}
