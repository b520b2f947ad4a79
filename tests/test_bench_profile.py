"""bench/profile_decode.py on the tiny model: every profiled second lands in one group, and the groups add up."""

import re

from bench import profile_decode


def test_operator_groups():
    assert profile_decode.group_of("aten::addmm") == "model matmuls (linear, lm head)"
    assert profile_decode.group_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention (SDPA)"
    assert profile_decode.group_of("aten::uniform_").startswith("sampling")
    assert profile_decode.group_of("aten::index_put_").startswith("KV cache")
    assert profile_decode.group_of("aten::frobnicate") == "other operators"


def test_profile_of_the_tiny_model_accounts_for_the_whole_run(tiny_llama, capsys):
    assert profile_decode.main(["--backbone", tiny_llama, "--batch", "4", "--samples", "6", "--max-new-tokens", "6",
                                "--prompt-length", "2", "--no-write"]) == 0
    out = capsys.readouterr().out
    total = float(re.search(r"profiled ([0-9.]+) s", out).group(1))
    shares = [float(m) for m in re.findall(r"^\| [^|`]+ \| [0-9.]+ \| ([0-9]+) % \|$", out, flags=re.M)]
    seconds = [float(m) for m in re.findall(r"^\| [^|`]+ \| ([0-9.]+) \| [0-9]+ % \|$", out, flags=re.M)]
    assert len(shares) >= 3 and abs(sum(shares) - 100) <= len(shares)  # rounded per row
    assert abs(sum(seconds) - total) <= 0.01 * len(seconds) + 0.02 * total
    assert re.search(r"limit of this batch size at [0-9]+ tokens/s", out)
