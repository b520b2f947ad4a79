"""Where the time of synthtune's batched decode goes: torch.profiler over sample_from_prefix at one batch size.

The same workload as bench/generate.py (bundled model, fp32, a soft prefix of 32 vectors, target lengths drawn
from GSM8K question lengths, EOS disabled, temperature 1), run under ``torch.profiler``. Operators are grouped
into what they do (the model's matmuls, attention, the rest of the model, sampling, the KV cache) and the time
outside any operator is Python and dispatch overhead. Writes the "decode profile" section of bench/RESULTS.md.

    python bench/profile_decode.py --batch 32 --samples 64 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine_info, machine_markdown, write_section  # noqa: E402
from bench.generate import gsm8k_lengths, linear_timings, matmul_flops  # noqa: E402

SECTION = "## decode profile (bench/profile_decode.py)"
#: operator name -> group; the first group whose any key is a substring of the name wins
GROUPS = [
    ("model matmuls (linear, lm head)", ("aten::addmm", "aten::mm", "aten::linear", "aten::matmul", "aten::bmm")),
    ("attention (SDPA)", ("scaled_dot_product", "flash_attention", "_efficient_attention")),
    ("sampling (uniforms, Gumbel, top-p, argmax)", ("aten::rand", "aten::uniform", "aten::topk", "aten::sort",
                                                    "aten::argmax", "aten::log", "aten::clamp", "aten::cumsum",
                                                    "aten::softmax", "aten::_softmax", "aten::exp", "aten::gather")),
    ("KV cache writes and copies", ("aten::copy_", "aten::index", "aten::slice_scatter", "aten::cat",
                                    "aten::index_put", "aten::new_empty", "aten::empty", "aten::zeros")),
    ("elementwise model ops (norms, rotary, SiLU, residual)", ("aten::mul", "aten::add", "aten::rsqrt", "aten::pow",
                                                               "aten::mean", "aten::silu", "aten::neg", "aten::sub",
                                                               "aten::div", "aten::embedding", "aten::where")),
]


def group_of(name: str) -> str:
    for group, keys in GROUPS:
        if any(k in name for k in keys):
            return group
    return "other operators"


def decode_matmul_rate(model: torch.nn.Module, batch: int, repeats: int = 5) -> float:
    """FLOP/s of the model's own linear layers (lm head included) on a [batch, in] input, the shapes a decode
    step multiplies: at small batch each weight is read from memory for few rows, so this is below the square
    matmul rate."""
    flop = sum(2 * batch * m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    times = sorted(linear_timings(model, batch, repeats))
    return flop / times[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--prompt-length", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--note", default="", help="a sentence on the machine's state (e.g. other jobs running)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from torch.profiler import ProfilerActivity, profile

    from synthtune.components.backbone import load_backbone
    from synthtune.components.sampling import sample_from_prefix

    bb = load_backbone(args.backbone)
    model, tokenizer = bb.model, bb.tokenizer
    params = sum(p.numel() for p in model.parameters())
    lengths = gsm8k_lengths(tokenizer, args.samples, args.max_new_tokens)
    dim = model.get_input_embeddings().weight.shape[1]
    prefix = torch.randn(args.samples, args.prompt_length, dim, generator=torch.Generator().manual_seed(0)) * 0.02

    def run() -> None:
        with torch.inference_mode():
            sample_from_prefix(model, prefix, list(range(args.samples)), lengths, eos_token_ids=[-1],
                               temperature=1.0, top_p=1.0, batch_size=args.batch)

    run()  # warm-up
    start = time.perf_counter()
    run()
    plain = time.perf_counter() - start
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        run()
        profiled = time.perf_counter() - start
    flops = matmul_flops()
    decode_rate = decode_matmul_rate(model, args.batch)

    # self time of every operator, grouped; the profiler's own overhead inflates the total a little
    by_group: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    for event in prof.key_averages():
        by_group[group_of(event.key)] += event.self_cpu_time_total / 1e6
        by_op[event.key] += event.self_cpu_time_total / 1e6
        calls[event.key] += event.count
    in_ops = sum(by_group.values())
    tokens = sum(lengths)
    matmul_ideal = 2 * params * tokens / flops
    lines = [SECTION, "", machine_markdown(machine_info()), "",
             f"Run: `python bench/profile_decode.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip(), "",
             f"Backbone {args.backbone} (fp32, {params / 1e6:.1f}M parameters), {torch.get_num_threads()} torch "
             f"threads, batch {args.batch}, {args.samples} samples, {tokens} generated tokens (GSM8K lengths, cap "
             f"{args.max_new_tokens}). Unprofiled run {plain:.1f} s ({tokens / plain:.0f} tokens/s); profiled "
             f"{profiled:.1f} s. Matmul rate now {flops / 1e9:.1f} GFLOP/s, so the model's FLOPs alone would take "
             f"{matmul_ideal:.1f} s. The model's own linear layers on a [{args.batch}, in] input (the decode step's "
             f"shapes, each weight read once per step) run at {decode_rate / 1e9:.1f} GFLOP/s, which puts the "
             f"limit of this batch size at {decode_rate / (2 * params):.0f} tokens/s. {args.note}".rstrip(), "",
             "| where | seconds | share of the profiled run |", "|---|---:|---:|"]
    for group, seconds in sorted(by_group.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {group} | {seconds:.2f} | {100 * seconds / profiled:.0f} % |")
    lines.append(f"| outside operators (Python, dispatch, profiler) | {max(0.0, profiled - in_ops):.2f} | "
                 f"{100 * max(0.0, profiled - in_ops) / profiled:.0f} % |")
    lines += ["", "Top operators by self time:", "", "| operator | calls | seconds |", "|---|---:|---:|"]
    for name, seconds in sorted(by_op.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"| `{name}` | {calls[name]} | {seconds:.2f} |")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines += ["", f"Load average (1/5/15 min) at the end: {load}."]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
