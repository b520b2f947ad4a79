"""Training and generation speed on whatever GPU this machine has: tokens/s and MFU.

Three measurements on one frozen backbone, in the settings docs/gpu.md recommends (bf16 weights,
bf16 autocast, SDPA attention; optionally activation checkpointing and torch.compile):

1. SoftSRV training step (SS_MC, forward + backward + Adam): SoftSRVModule's prompts through
   ``reconstruction_loss``, exactly what ``training_step`` runs.
2. Prompt-tuning training step (forward + backward + SGD): PromptTuningModule's ``loss_on``, the
   verbalizer cross-entropy of its supervised step.
3. Generation: ``sample_from_prefix`` (synthtune's sampler, the predict path) from SoftSRV prompts.
4. With ``--vllm``: the same generation through ``engine: vllm`` (the prompts as ``prompt_embeds``, ``max_num_seqs``
   = the batch, rows run to ``--new-tokens``); the engine's start-up is reported apart, not in the timed run.
   Needs vLLM (on a GPU machine ``bash scripts/setup.sh --engine vllm`` installs the ``vllm`` package in .venv-vllm).

MFU (model FLOPs utilisation) = model FLOP/s ÷ the device's peak bf16 FLOP/s (a table of known GPUs,
else a measured bf16 matmul). Model FLOPs count the matmul weights N (every 2-D weight but the input
embedding lookup): 2·N per token forward; a frozen backbone's backward computes input gradients only,
another 2·N (no weight gradients), so a training step is 4·N per token (6·N with activation
checkpointing, which reruns the forward). Attention's score FLOPs are left out (small next to N at
these lengths), as is common for MFU.

    python bench/gpu.py                                   # SmolLM2-135M on the GPU it finds
    python bench/gpu.py --backbone Qwen/Qwen2.5-7B --gradient-checkpointing --compile
    python bench/gpu.py --device cpu --quick --backbone <folder>   # smoke test (tests run this)
    .venv-vllm/bin/python bench/gpu.py --vllm                     # adds the vLLM engine's generation row

Without a GPU (and without ``--device cpu``) it prints one line saying so and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine_info, machine_markdown  # noqa: E402
from bench.softsrv import real_batch  # noqa: E402

#: Dense bf16 tensor-core peak FLOP/s of known GPUs (vendor data sheets, without sparsity), matched
#: against ``torch.cuda.get_device_name`` in this order (the first substring found wins).
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500e12), ("B200", 2250e12), ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12),
    ("H800", 989e12), ("GH200", 989e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12),
    ("L40", 181e12), ("L4", 121e12), ("A10G", 70e12), ("A10", 125e12), ("A6000", 155e12),
    ("RTX 4090", 165e12), ("RTX 3090", 71e12), ("MI300X", 1307e12), ("MI250X", 383e12),
)


def measured_matmul_flops(device: str, dtype: torch.dtype, size: int, repeats: int = 5) -> float:
    """Median FLOP/s of a [size, size] @ [size, size] matmul (2·size³ FLOP) in ``dtype`` on ``device``."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for i in range(repeats + 1):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if i:  # the first call warms up
            times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2]


def peak_flops(device: str, quick: bool) -> tuple[float, str]:
    """The device's peak FLOP/s and where the figure comes from."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(device)
        for key, flops in PEAK_BF16_FLOPS:
            if key in name:
                return flops, f"data sheet ({key} bf16 dense)"
        return measured_matmul_flops(device, torch.bfloat16, 8192), "measured bf16 matmul 8192³"
    size = 256 if quick else 2048
    return measured_matmul_flops(device, torch.float32, size), f"measured fp32 matmul {size}³"


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_params(model: torch.nn.Module) -> int:
    """N: the weights a token meets in matmuls (every 2-D weight but the input embedding, plus the
    output head even when it shares the embedding's tensor)."""
    inputs, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters() if p.dim() == 2)  # tied weights appear once
    return total - inputs.numel() + (head.numel() if head is inputs else 0)


def autocast(device: str):
    """bf16 autocast on GPU (what ``--trainer.precision bf16-mixed`` does); nothing on CPU."""
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def time_steps(step, params: list[torch.Tensor], optimizer: torch.optim.Optimizer, steps: int, device: str) -> float:
    """Median seconds of ``steps`` training steps (loss, backward, optimizer), after one warm-up."""
    times = []
    for i in range(steps + 1):
        synchronize(device)
        start = time.perf_counter()
        with autocast(device):
            loss = step()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
        if not torch.isfinite(loss.detach()):
            raise RuntimeError(f"non-finite loss {float(loss)} in the benchmark step")
    return sorted(times)[len(times) // 2]


def speed_options(args: argparse.Namespace) -> dict[str, bool]:
    return {"gradient_checkpointing": args.gradient_checkpointing, "compile": args.compile}


def softsrv_step(args: argparse.Namespace, ids: torch.Tensor, mask: torch.Tensor) -> dict:
    from synthtune.components.softsrv.prefix_lm import reconstruction_loss
    from synthtune.lightning_modules import SoftSRVModule

    module = SoftSRVModule(backbone=args.backbone, dtype=args.dtype, parameterization="mc",
                           prompt_length=args.prompt_length, **speed_options(args)).to(args.device)
    module.train()
    module._contexts["train"] = torch.randn(ids.shape[0], module.context_dim, device=args.device)
    index = torch.arange(ids.shape[0])
    params = list(module.soft_prompt.parameters())
    seconds = time_steps(lambda: reconstruction_loss(module.backbone, module.prompts(index), ids, mask),
                         params, torch.optim.Adam(params, lr=1e-4), args.steps, args.device)
    positions = ids.shape[0] * (args.prompt_length + ids.shape[1])
    return {"what": "SoftSRV step (SS_MC)", "seconds": seconds, "tokens": int(mask.sum()), "positions": positions}


def prompt_tuning_step(args: argparse.Namespace, ids: torch.Tensor, mask: torch.Tensor, tokenizer) -> dict:
    from synthtune.lightning_modules import PromptTuningModule

    # multi-token label words: any tokenizer scores them (the sum of their tokens' log-probabilities)
    module = PromptTuningModule(template="{text} It was", label_words=["bad", "good"], multi_token_labels=True,
                                backbone=args.backbone,
                                dtype=args.dtype, prompt_length=args.prompt_length,
                                **speed_options(args)).to(args.device)
    module.train()
    texts = tokenizer.batch_decode([row[m.bool()] for row, m in zip(ids.cpu(), mask.cpu())], skip_special_tokens=True)
    part = {"rows": [{"text": t} for t in texts], "label": torch.arange(len(texts)) % 2}
    row_ids, row_mask = module.encode(part["rows"])
    params = list(module.soft_prompt.parameters())
    seconds = time_steps(lambda: module.loss_on(part), params, torch.optim.SGD(params, lr=1e-3), args.steps,
                         args.device)
    positions = row_ids.shape[0] * (args.prompt_length + row_ids.shape[1])
    return {"what": "prompt-tuning step", "seconds": seconds, "tokens": int(row_mask.sum()), "positions": positions}


def generation(args: argparse.Namespace) -> dict:
    from synthtune.components.sampling import sample_from_prefix
    from synthtune.lightning_modules import SoftSRVModule

    module = SoftSRVModule(backbone=args.backbone, dtype=args.dtype, parameterization="np",
                           prompt_length=args.prompt_length).to(args.device).eval()
    prefix = module.prompts(torch.arange(args.gen_batch)).detach()
    seeds = list(range(args.gen_batch))

    def run() -> list[list[int]]:
        with autocast(args.device):
            return sample_from_prefix(module.backbone, prefix, seeds, args.new_tokens, eos_token_ids=[-1],
                                      batch_size=args.gen_batch)

    run()  # warm-up
    synchronize(args.device)
    start = time.perf_counter()
    out = run()
    synchronize(args.device)
    seconds = time.perf_counter() - start
    tokens = sum(len(o) for o in out)
    return {"what": f"generation (batch {args.gen_batch})", "seconds": seconds, "tokens": tokens,
            "positions": tokens}


def vllm_generation(args: argparse.Namespace) -> dict:
    """:func:`generation` through the vLLM engine: the same SoftSRV prompts, computed by the module on the CPU,
    go to vLLM as ``prompt_embeds``; vLLM holds its own copy of the backbone on the device."""
    from synthtune.components.sampling_settings import SamplingSettings
    from synthtune.lightning_modules import SoftSRVModule

    options = {"max_num_seqs": args.gen_batch, "max_model_len": args.prompt_length + args.new_tokens + 8}
    if args.device.startswith("cuda"):
        options["gpu_memory_utilization"] = args.vllm_gpu_memory
    module = SoftSRVModule(backbone=args.backbone, dtype=args.dtype, parameterization="np",
                           prompt_length=args.prompt_length, engine="vllm", engine_options=options).eval()
    prefix = module.prompts(torch.arange(args.gen_batch)).detach()
    seeds = list(range(args.gen_batch))
    settings = SamplingSettings(max_new_tokens=args.new_tokens)

    def run() -> list[list[int]]:  # no EOS: every row runs its new tokens, as in the native row
        return module.engine.sample_embeds(module.backbone, prefix, seeds, settings, eos_token_ids=[]).tokens

    module.engine.llm()  # start-up, timed by the engine
    run()  # warm-up
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
    tokens = sum(len(o) for o in out)
    return {"what": f"generation, vLLM (batch {args.gen_batch})", "seconds": seconds, "tokens": tokens,
            "positions": tokens, "startup": module.engine.startup_seconds}


def with_rates(row: dict, n: int, peak: float, flops_per_position: int) -> dict:
    """Add tokens/s, model FLOP/s and MFU to a measurement."""
    flops = flops_per_position * n * row["positions"] / row["seconds"]
    return row | {"tokens_per_s": row["tokens"] / row["seconds"], "model_flops": flops, "mfu": flops / peak}


def markdown(rows: list[dict], header: dict) -> str:
    lines = [machine_markdown(header), "",
             "| measurement | s per step/run | real tokens/s | model TFLOP/s | MFU |", "|---|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['seconds']:.4f} | {r['tokens_per_s']:.0f} | {r['model_flops'] / 1e12:.3f} "
              f"| {r['mfu']:.1%} |" for r in rows]
    lines += [f"\n{r['what']}: the engine started in {r['startup']:.1f} s (not in the timed run)" for r in rows
              if r.get("startup") is not None]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: the first GPU)")
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--dtype", default=None, help="frozen weights: bf16 (GPU default) or fp32 (CPU default)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256, help="tokens per training example")
    ap.add_argument("--prompt-length", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10, help="timed training steps (after one warm-up)")
    ap.add_argument("--gen-batch", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the backbone's forward")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the whole script")
    ap.add_argument("--json", type=Path, default=None, help="also write the measurements to this file")
    ap.add_argument("--vllm", action="store_true", help="also time generation through the vLLM engine")
    ap.add_argument("--vllm-gpu-memory", type=float, default=0.5,
                    help="vLLM's gpu_memory_utilization (the other rows' models share the GPU)")
    args = ap.parse_args(argv)
    if args.vllm:
        from synthtune.components.engines.vllm_engine import INSTALL_HINT, vllm_installed

        if not vllm_installed():
            print(f"error: --vllm needs vLLM, which is not installed in this environment; {INSTALL_HINT}",
                  file=sys.stderr)
            return 2
    if args.device is None:
        if not torch.cuda.is_available():
            print("no GPU found: bench/gpu.py measures CUDA devices (use --device cpu --quick for a smoke test)")
            return 0
        args.device = "cuda"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"no GPU found: --device {args.device} needs CUDA (use --device cpu --quick for a smoke test)")
        return 0
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.quick:
        args.batch, args.seq, args.prompt_length, args.steps = 2, 16, 4, 2
        args.gen_batch, args.new_tokens = 2, 8

    from synthtune.components.backbone import load_backbone

    bb = load_backbone(args.backbone, args.dtype, **speed_options(args))
    n = matmul_params(bb.model)
    peak, source = peak_flops(args.device, args.quick)
    ids, mask = real_batch(bb.tokenizer, args.batch, args.seq, args.device)
    train_flops = 6 if args.gradient_checkpointing else 4  # per weight and position: see the module docstring
    rows = [with_rates(softsrv_step(args, ids, mask), n, peak, train_flops),
            with_rates(prompt_tuning_step(args, ids, mask, bb.tokenizer), n, peak, train_flops),
            with_rates(generation(args), n, peak, 2)]
    if args.vllm:
        rows.append(with_rates(vllm_generation(args), n, peak, 2))
    header = machine_info(device=args.device, backbone=args.backbone, dtype=args.dtype,
                          matmul_params=f"{n / 1e6:.1f}M", peak=f"{peak / 1e12:.3g} TFLOP/s ({source})",
                          batch=str(args.batch), seq=str(args.seq), prompt_length=str(args.prompt_length),
                          **{k: str(v) for k, v in speed_options(args).items()})
    print(markdown(rows, header), end="")
    if args.json:
        args.json.write_text(json.dumps({"settings": header, "peak_flops": peak, "rows": rows}, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
