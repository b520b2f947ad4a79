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


def test_the_slot_schedule_refills_a_slot_as_its_sample_ends():
    assert generate.slot_schedule([3, 1, 2], batch=2) == [2, 2, 2]  # the 1-token sample's slot takes the third
    assert generate.slot_schedule([3, 1, 2], batch=1) == [1] * 6
    assert generate.slot_schedule([4, 1, 1], batch=8) == [3, 1, 1, 1]  # nothing waits: the batch shrinks


def test_the_matmul_floor_adds_each_steps_rows_and_the_prefix(monkeypatch):
    # a fake machine: the linear layers take 1 s per row with the LM head, 0.5 s without it
    monkeypatch.setattr(generate, "linear_seconds", lambda model, rows, head=True: rows * (1.0 if head else 0.5))
    lengths = [3, 1, 2, 5]
    steps = generate.slot_schedule(lengths, 3)
    floor = generate.matmul_floor(None, lengths, batch=3, prompt_length=2)
    # decode: one row-second per generated token; prefix: 4 samples x 2 positions x 0.5 s, plus 4 head rows x 0.5 s
    assert sum(steps) == sum(lengths)
    assert floor == sum(lengths) + 4 * 2 * 0.5 + 4 * 0.5
    # a cost that is not linear in the rows is interpolated between the measured powers of two
    monkeypatch.setattr(generate, "linear_seconds", lambda model, rows, head=True: {1: 1.0, 2: 2.0, 4: 2.0}.get(rows, 0.0))
    assert generate.matmul_floor(None, [2, 2, 2], batch=4, prompt_length=0) == 2 * 2.0


def test_each_row_is_shown_against_the_jobs_matmul_floor(tiny_llama, capsys, monkeypatch):
    monkeypatch.setattr(backbone, "_loaded", {})
    assert generate.main(["--backbone", tiny_llama, "--batches", "2", "--max-new-tokens", "5", "--prompt-length", "2",
                          "--no-write"]) == 0
    rows = re.findall(r"^\| (synthtune|hf generate) \| 2 \| 4 \|(?: [^|]+ \|){6} ([0-9.e-]+) \| ([0-9]+) % \|",
                      capsys.readouterr().out, flags=re.M)
    assert [r[0] for r in rows] == ["synthtune", "hf generate"]
    assert rows[0][1] == rows[1][1] and float(rows[0][1]) > 0  # one floor per batch, whatever the path
