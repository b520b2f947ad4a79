"""bench/gpu.py: its CPU smoke mode on the tiny model, the no-GPU line, FLOP counting and the peak table."""

import json

import pytest
import torch

from bench import gpu
from synthtune.components.backbone import load_backbone


def test_quick_cpu_mode_measures_all_three_on_the_tiny_model(tiny_llama, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--device", "cpu", "--quick", "--backbone", tiny_llama, "--json", str(out)]) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    rows = {r["what"]: r for r in result["rows"]}
    assert list(rows) == ["SoftSRV step (SS_MC)", "prompt-tuning step", "generation (batch 2)"]
    assert rows["SoftSRV step (SS_MC)"]["positions"] == 2 * (4 + 16)  # batch 2 x (prompt 4 + seq 16)
    assert rows["generation (batch 2)"]["tokens"] == 2 * 8  # no EOS can stop a row: every row runs 8 tokens
    n = gpu.matmul_params(load_backbone(tiny_llama).model)
    peak = result["peak_flops"]
    for r in rows.values():
        assert r["seconds"] > 0 and r["tokens_per_s"] == pytest.approx(r["tokens"] / r["seconds"])
        per_position = 2 if r["what"].startswith("generation") else 4
        assert r["model_flops"] == pytest.approx(per_position * n * r["positions"] / r["seconds"])
        assert r["mfu"] == pytest.approx(r["model_flops"] / peak)
        assert f"| {r['what']} |" in table


def test_without_a_gpu_it_says_so_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("no GPU found")


def test_matmul_params_count_the_tied_head_once(tiny_llama):
    model = load_backbone(tiny_llama).model
    vocab, d = model.get_input_embeddings().weight.shape
    # per layer: q 32x32, k and v 32x16 (2 kv heads), o 32x32, gate/up/down 3 x 32x64; plus the tied head
    assert gpu.matmul_params(model) == 2 * (1024 + 512 + 512 + 1024 + 3 * 2048) + vocab * d


@pytest.mark.parametrize("name,flops", [("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 80GB HBM3", 989e12),
                                        ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA L40S", 362e12)])
def test_peak_flops_from_the_table(monkeypatch, name, flops):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert gpu.peak_flops("cuda", quick=False)[0] == flops
