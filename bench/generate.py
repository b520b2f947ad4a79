"""Generation speed: synthtune's sampler vs Hugging Face ``generate``, against the machine's compute limit.

Each sample gets a soft prefix and a target length drawn from the token lengths of real GSM8K
questions (``data/gsm8k/train.jsonl`` under the backbone's tokenizer), so rows end at different
steps as real samples do (EOS is disabled and each row stops at its target length; HF ``generate``
gets the same per-row stop through a stopping criterion, and, as with a real EOS, keeps computing a
finished row until its whole batch ends). Both sample at temperature 1 with the same prefixes.

The compute limit is the fp32 matmul rate measured in the same run (a square matmul, median of
several) divided by 2 × parameters FLOP per generated token; each tokens/s figure is shown as a
fraction of it. A decode step multiplies a few rows by every weight, which no CPU does at the square
rate, so each row is also shown against the workload's matmul floor (``matmul_floor``): the seconds the
model's own linear layers take, in the same run, at each step's row count of the job's schedule, plus
the prefix positions, with nothing else (no attention, sampling or overhead). Writes the "generate"
section of bench/RESULTS.md.

    python bench/generate.py            # batches 1, 8, 32, 128
    python bench/generate.py --quick    # fewer samples per batch (about 5 minutes on 2 busy cores)
    python bench/generate.py --threads 1 --batches 32 --compile --skip-hf-above 0   # eager vs torch.compile
    python bench/generate.py --threads 1 --batches 8 32 --layouts   # weight layout × sampler
    python bench/generate.py --batches 32 64 128 --samples 128 --skip-hf-above 0   # slot counts for one job

HF ``generate`` runs on the model as Hugging Face loads it (row-major weights); synthtune's loader stores
the frozen linear weights column-major (``column_major_linears``). ``--layouts`` adds the two crossed rows
(synthtune's sampler on row-major weights, HF ``generate`` on column-major ones), which separate what the
layout gives from what the sampler gives.

``--compile`` adds a third path, the sampler on a ``torch.compile``d backbone (``load_backbone(compile=True)``,
what ``--model.init_args.compile true`` gives). Its warm-up is one whole untimed run of the same workload, so
every cache layout the sampler meets is compiled before the timed run; the warm-up's seconds are reported
too. It writes its own section, "generate, torch.compile", so the default table stays.

``--vllm`` adds vLLM rows (``engine: vllm``; run it with .venv-vllm's python, ``bash scripts/setup.sh --engine
vllm``): the same prefixes go in as ``prompt_embeds`` and each row stops at its target length (``max_tokens``),
with ``max_num_seqs`` = the batch size, so vLLM schedules as many rows at once as the native sampler's slots.
Each batch size runs in a fresh process (one engine per process and setting); the engine's start-up (loading and
profiling the model, not in the timed seconds) is reported separately. On a CPU vLLM binds its threads to the
cores and keeps one core for itself by default: the "vllm" row is that default (what ``engine: vllm`` gives),
the "vllm, no reserved core" row binds every core (``VLLM_CPU_NUM_OF_RESERVED_CPU=0``). It writes its own
section, "generate, vLLM", with the native sampler's and HF generate's rows of the same run beside it.

    .venv-vllm/bin/python bench/generate.py --vllm --batches 1 32 128 --quick
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine_info, machine_markdown, write_section  # noqa: E402

SECTION = "## generate (bench/generate.py)"
COMPILE_SECTION = "## generate, torch.compile (bench/generate.py --compile)"
SLOTS_SECTION = "## generate, one job at several slot counts (bench/generate.py --samples)"
VLLM_SECTION = "## generate, vLLM (bench/generate.py --vllm)"
#: vLLM rows: name -> VLLM_CPU_NUM_OF_RESERVED_CPU (None: vLLM's default, one core kept for itself on a CPU).
VLLM_PATHS = {"vllm": None, "vllm, no reserved core": "0"}
GSM8K = Path(__file__).resolve().parents[1] / "data" / "gsm8k" / "train.jsonl"


def matmul_flops(size: int = 2048, repeats: int = 7) -> float:
    """Median fp32 FLOP/s of a [size, size] @ [size, size] matmul (2·size³ FLOP) on this machine now."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2]


def gsm8k_lengths(tokenizer, count: int, cap: int, seed: int = 0) -> list[int]:
    """``count`` question lengths in tokens, drawn (with a fixed seed) from the GSM8K train questions, at most ``cap``."""
    questions = [json.loads(line)["question"] for line in GSM8K.read_text(encoding="utf-8").split("\n") if line]  # not splitlines: texts hold U+2028
    lengths = [min(cap, len(tokenizer(q)["input_ids"])) for q in questions]
    pick = torch.randint(len(lengths), (count,), generator=torch.Generator().manual_seed(seed))
    return [lengths[i] for i in pick.tolist()]


def slot_schedule(lengths: list[int], batch: int) -> list[int]:
    """Rows decoded at each step when ``batch`` slots take the samples in order and a slot is refilled as
    soon as its sample reaches its length (synthtune's schedule; without refills the rows only shrink)."""
    waiting, live, steps = list(reversed(lengths)), [], []
    while waiting or live:
        while len(live) < batch and waiting:
            live.append(waiting.pop())
        steps.append(len(live))
        live = [left - 1 for left in live if left > 1]
    return steps


def linear_timings(model: torch.nn.Module, rows: int, repeats: int = 5, head: bool = True) -> list[float]:
    """``repeats`` timings (after one warm-up) of every ``nn.Linear`` of ``model`` (the LM head only if
    ``head``) applied once to a [rows, in] input, as a decode step multiplies them."""
    out = model.get_output_embeddings()
    weights = [(m.weight.detach(), None if m.bias is None else m.bias.detach()) for m in model.modules()
               if isinstance(m, torch.nn.Linear) and (head or m is not out)]
    inputs = {w.shape[1]: torch.randn(rows, w.shape[1]) for w, _ in weights}
    times = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            for w, b in weights:
                torch.nn.functional.linear(inputs[w.shape[1]], w, b)
            times.append(time.perf_counter() - start)
    return times[1:]


def linear_seconds(model: torch.nn.Module, rows: int, repeats: int = 5, head: bool = True) -> float:
    """The fastest of :func:`linear_timings` (a floor, not a typical time)."""
    return min(linear_timings(model, rows, repeats, head))


def matmul_floor(model: torch.nn.Module, lengths: list[int], batch: int, prompt_length: int) -> float:
    """Seconds the job's matmuls alone need on this machine now: each decode step's linear layers at its row
    count in :func:`slot_schedule` (measured at powers of two up to ``batch``, linear in between), plus every
    prefix position through the layers and one position per sample through the LM head, at a compute-bound
    shape. Attention, sampling and all overhead count as zero, so no sampler on these weights and slots can
    be faster; what a path reaches of it is its efficiency."""
    steps = slot_schedule(lengths, batch)
    grid = sorted({batch} | {2**k for k in range(batch.bit_length())})  # 1, 2, 4, ... up to batch
    cost = {rows: linear_seconds(model, rows) for rows in grid}

    def step(rows: int) -> float:
        above = next(g for g in grid if g >= rows)
        below = max(g for g in grid if g <= rows)
        if above == below:
            return cost[rows]
        return cost[below] + (cost[above] - cost[below]) * (rows - below) / (above - below)

    wide = 256  # prefix positions per measured chunk: enough rows for the matmuls to be compute-bound
    layers, with_head = linear_seconds(model, wide, head=False), linear_seconds(model, wide)
    prefill = len(lengths) * prompt_length * layers / wide + len(lengths) * (with_head - layers) / wide
    return sum(step(rows) for rows in steps) + prefill


def run_synthtune(model, prefix: torch.Tensor, lengths: list[int], batch: int) -> None:
    from synthtune.components.sampling import sample_from_prefix

    out = sample_from_prefix(model, prefix, list(range(len(lengths))), lengths, eos_token_ids=[-1],
                             temperature=1.0, top_p=1.0, batch_size=batch)
    assert [len(o) for o in out] == lengths


def run_hf(model, prefix: torch.Tensor, lengths: list[int], batch: int, pad_token_id: int) -> None:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class RowLength(StoppingCriteria):
        def __init__(self, targets: list[int]) -> None:
            self.targets = torch.tensor(targets)

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
            return input_ids.shape[1] >= self.targets.to(input_ids.device)

    for start in range(0, len(lengths), batch):
        chunk, targets = prefix[start:start + batch], lengths[start:start + batch]
        with torch.inference_mode():
            out = model.generate(inputs_embeds=chunk, attention_mask=torch.ones(chunk.shape[:2], dtype=torch.long),
                                 do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=max(targets),
                                 stopping_criteria=StoppingCriteriaList([RowLength(targets)]),
                                 eos_token_id=None, pad_token_id=pad_token_id)
        assert out.shape[1] == max(targets)


def vllm_job(backbone: str, prefix: torch.Tensor, lengths: list[int], batch: int, reserved: str | None) -> dict:
    """In a fresh process: start a vLLM engine on ``backbone`` with ``batch`` sequences at once, warm it up on a
    few 4-token rows, then time the job (each prefix row as ``prompt_embeds``, stopping at its length)."""
    import dataclasses

    if reserved is not None:
        os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = reserved
    from vllm import SamplingParams

    from synthtune.components.backbone import load_backbone
    from synthtune.components.engines.sampling_params import sampling_params_kwargs
    from synthtune.components.engines.vllm_engine import VLLMEngine, unpadded_rows
    from synthtune.components.sampling_settings import SamplingSettings

    bb = load_backbone(backbone)
    options = {"max_num_seqs": batch, "max_model_len": prefix.shape[1] + max(lengths) + 8}
    if not torch.cuda.is_available():
        options["kv_cache_memory_bytes"] = 4 * 2**30
    engine = VLLMEngine(bb, options)
    llm = engine.llm()
    rows = [{"prompt_embeds": row} for row in unpadded_rows(prefix, None, engine.torch_dtype)]
    base = SamplingSettings(temperature=1.0, top_p=1.0)

    def run(count: int, caps: list[int]) -> int:
        params = [SamplingParams(**sampling_params_kwargs(dataclasses.replace(base, max_new_tokens=cap), i, []))
                  for i, cap in enumerate(caps)]
        out = llm.generate(rows[:count], params, use_tqdm=False)
        assert [len(o.outputs[0].token_ids) for o in out] == caps
        return sum(caps)

    warm = min(batch, len(lengths))
    start = time.perf_counter()
    run(warm, [4] * warm)
    warm_seconds = time.perf_counter() - start
    start = time.perf_counter()
    run(len(lengths), lengths)
    return {"startup": engine.startup_seconds, "warm_up": warm_seconds, "seconds": time.perf_counter() - start}


def run_vllm(backbone: str, prefix: torch.Tensor, lengths: list[int], batch: int, reserved: str | None) -> dict:
    """:func:`vllm_job` in a spawned process (vLLM's engine state is per process; each batch size is its own)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(vllm_job, (backbone, prefix, lengths, batch, reserved))


def section(args: argparse.Namespace) -> str:
    """The RESULTS.md section a run writes: each kind of comparison keeps its own table."""
    if args.vllm:
        return VLLM_SECTION
    return COMPILE_SECTION if args.compile else SLOTS_SECTION if args.samples else SECTION


def results_markdown(args: argparse.Namespace, argv: list[str] | None, info: dict, params: int, flops: float,
                     limit: float, rows: list[dict]) -> str:
    """The RESULTS.md section for the rows measured so far."""
    hf_at = {r["batch"]: r["tok_s"] for r in rows if r["path"] == "hf generate"}
    lines = [section(args), "", machine_markdown(info), "",
             f"Run: `python bench/generate.py {' '.join(argv if argv is not None else sys.argv[1:])}`".rstrip() + "",
             "", f"Backbone {args.backbone} (fp32, {params / 1e6:.1f}M parameters) on cpu, {torch.get_num_threads()} "
             f"torch threads; soft prefix of {args.prompt_length} vectors; target lengths drawn from the GSM8K train "
             f"questions' token lengths (cap {args.max_new_tokens}); temperature 1, top-p 1. Measured fp32 matmul "
             f"rate {flops / 1e9:.1f} GFLOP/s, so the compute limit is {limit:.0f} tokens/s (2 × params FLOP per token). "
             "The \"with prefix\" column counts the prefix positions too (they cost the same FLOPs per position). "
             "\"Of matmul floor\" is the job's matmul floor at that batch (the model's own linear layers at each "
             "step's row count of the slot schedule, plus the prefix, nothing else; see `matmul_floor`) divided by "
             "the path's seconds.",
             "", "| path | batch | samples | tokens | warm-up (s) | seconds | tokens/s | of compute limit | with prefix "
             "| floor (s) | of matmul floor | × HF at batch |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        vs = f"{r['tok_s'] / hf_at[r['batch']]:.2f}" if r["batch"] in hf_at else "-"
        lines.append(f"| {r['path']} | {r['batch']} | {r['samples']} | {r['tokens']} | {r['warm_up']:.1f} | "
                     f"{r['seconds']:.1f} | {r['tok_s']:.1f} | {100 * r['of_limit']:.0f} % | "
                     f"{100 * r['with_prefix']:.0f} % | {r['floor']:.3g} | {100 * r['floor'] / r['seconds']:.0f} % | "
                     f"{vs} |")
    ours32 = next((r for r in rows if r["path"] == "synthtune" and r["batch"] == 32), None)
    if ours32 is not None and not args.samples:  # a slot comparison has no peer row
        fraction = "met" if ours32["of_limit"] >= 0.5 else "missed"
        speedup = ("met" if ours32["tok_s"] >= 3 * hf_at[32] else "missed") if 32 in hf_at else "not measured"
        lines += ["", f"Targets at batch 32: ≥ 50 % of the compute limit {fraction} "
                      f"({100 * ours32['of_limit']:.0f} %); ≥ 3× HF generate {speedup}. The job's matmul floor at "
                      f"batch 32 is {ours32['tokens'] / ours32['floor']:.0f} tokens/s; synthtune reaches "
                      f"{100 * ours32['floor'] / ours32['seconds']:.0f} % of it."]
    starts = [f"{r['path']} at batch {r['batch']}: {r['startup']:.1f} s" for r in rows if r.get("startup") is not None]
    if starts:
        lines += ["", "vLLM engine start-up (loading and profiling the model; not in the seconds above): "
                      + "; ".join(starts) + "."]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines += ["", f"Load average (1/5/15 min) after the last row: {load}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128])
    ap.add_argument("--samples-per-slot", type=float, default=2.0,
                    help="samples generated per batch slot (continuous batching refills slots as rows end)")
    ap.add_argument("--min-samples", type=int, default=4)
    ap.add_argument("--samples", type=int, default=None,
                    help="the same this many samples at every batch size (a slot-count comparison of one job)")
    ap.add_argument("--prompt-length", type=int, default=32, help="soft prefix vectors per sample")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="cap on a sample's target length")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--skip-hf-above", type=int, default=None, help="time HF generate only up to this batch")
    ap.add_argument("--quick", action="store_true", help="1 sample per slot (the batch-128 HF run dominates)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    ap.add_argument("--layouts", action="store_true",
                    help="also time synthtune on row-major weights and HF generate on column-major ones")
    ap.add_argument("--compile", action="store_true",
                    help="also time the sampler on a torch.compile'd backbone (warm-up: one whole untimed run)")
    ap.add_argument("--vllm", action="store_true",
                    help="also time vLLM on the same prefixes (needs vLLM: run with .venv-vllm's python)")
    args = ap.parse_args(argv)
    if args.vllm:
        from synthtune.components.engines.vllm_engine import INSTALL_HINT, vllm_installed

        if not vllm_installed():
            print(f"error: --vllm needs vLLM, which is not installed in this environment; {INSTALL_HINT}",
                  file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.samples_per_slot = 1.0

    from synthtune.components.backbone import load_backbone, row_major

    info = machine_info()
    bb = load_backbone(args.backbone)
    model = bb.model
    hf_model = row_major(copy.deepcopy(model))  # the peer: the weights as Hugging Face loads them
    params = sum(p.numel() for p in model.parameters())
    flops = matmul_flops()
    limit = flops / (2 * params)  # tokens/s if every FLOP of 2 × params per token ran at the matmul rate
    print(f"params {params / 1e6:.1f}M, matmul {flops / 1e9:.1f} GFLOP/s, limit {limit:.0f} tokens/s", flush=True)

    gen = torch.Generator().manual_seed(0)
    scale = model.get_input_embeddings().weight.std().item()
    rows = []
    for batch in args.batches:
        count = args.samples or max(args.min_samples, int(round(batch * args.samples_per_slot)))
        if args.samples:  # the same rows at every batch size: only the slot count changes
            gen = torch.Generator().manual_seed(0)
        lengths = gsm8k_lengths(bb.tokenizer, count, args.max_new_tokens, seed=0 if args.samples else batch)
        prefix = torch.randn(count, args.prompt_length, bb.hidden_size, generator=gen) * scale
        warm = min(batch, count)
        floor = matmul_floor(model, lengths, batch, args.prompt_length)
        print(f"batch {batch}: matmul floor {floor:.2f} s ({sum(lengths) / floor:.0f} tokens/s)", flush=True)
        paths = [("synthtune", lambda: run_synthtune(model, prefix, lengths, batch),
                  lambda: run_synthtune(model, prefix[:warm], [4] * warm, batch))]
        if args.compile:
            compiled = load_backbone(args.backbone, compile=True).model
            paths.append(("synthtune, torch.compile", lambda: run_synthtune(compiled, prefix, lengths, batch),
                          lambda: run_synthtune(compiled, prefix, lengths, batch)))
        if args.layouts:
            paths.append(("synthtune, row-major weights", lambda: run_synthtune(hf_model, prefix, lengths, batch),
                          lambda: run_synthtune(hf_model, prefix[:warm], [4] * warm, batch)))
        hf_paths = [("hf generate", hf_model)] + ([("hf generate, column-major weights", model)] if args.layouts else [])
        if args.skip_hf_above is None or batch <= args.skip_hf_above:
            for name, weights in hf_paths:
                paths.append((name, lambda w=weights: run_hf(w, prefix, lengths, batch, bb.tokenizer.pad_token_id),
                              lambda w=weights: run_hf(w, prefix[:warm], [4] * warm, batch,
                                                       bb.tokenizer.pad_token_id)))
        if args.vllm:
            for name, reserved in VLLM_PATHS.items():
                paths.append((name, lambda r=reserved: run_vllm(args.backbone, prefix, lengths, batch, r), None))
        for name, timed, warm_up in paths:
            startup = None
            if warm_up is None:  # a vLLM row: its own process times its warm-up and its run
                job = timed()
                startup, warm_seconds, seconds = job["startup"], job["warm_up"], job["seconds"]
            else:
                start = time.perf_counter()
                warm_up()
                warm_seconds = time.perf_counter() - start
                start = time.perf_counter()
                timed()
                seconds = time.perf_counter() - start
            tok_s = sum(lengths) / seconds
            processed = (sum(lengths) + count * args.prompt_length) / seconds  # prefix positions cost FLOPs too
            rows.append({"path": name, "batch": batch, "samples": count, "tokens": sum(lengths),
                         "warm_up": warm_seconds, "seconds": seconds,
                         "tok_s": tok_s, "of_limit": tok_s / limit, "with_prefix": processed / limit,
                         "floor": floor, "startup": startup})
            print(rows[-1], flush=True)
            markdown = results_markdown(args, argv, info, params, flops, limit, rows)
            if not args.no_write:  # after every row, so a run cut short still leaves what it measured
                write_section(section(args), markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
