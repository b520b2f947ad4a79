"""SoftSRV speed and memory against the named peers, on the same frozen backbone in one run.

1. Training step (forward + backward + Adam) at the same batch, sequence and prompt length:
   SoftSRVModule SS_NP and SS_MC against Hugging Face PEFT ``PromptTuning`` computing the same
   reconstruction loss (next-token loss on the real tokens only). Each variant runs in its own
   subprocess so its peak memory is its own (CPU: peak RSS growth over the loaded model;
   GPU: ``torch.cuda.max_memory_allocated``).
2. Generation tokens/s: synthtune's predict path (``SoftSRVModule.generate``) against HF
   ``generate(inputs_embeds=...)`` at batch 1, 8 and 32, both forced to the same number of tokens.

The peers run on the weights as Hugging Face loads them (row-major); synthtune's loader stores the frozen
linear weights column-major on machines without CUDA (``column_major_linears``).

Targets (issue #2): SS_NP step time ≤ 0.9× PEFT's and peak memory ≤ PEFT's; batched generation
≥ HF generate at equal batch and ≥ 6× the batch-1 tokens/s.

    python bench/softsrv.py                 # bundled SmolLM2-135M, CPU, writes bench/RESULTS.md
    python bench/softsrv.py --device cuda   # on a GPU
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, machine_markdown, write_section  # noqa: E402

SECTION = "## softsrv (bench/softsrv.py)"
REPO = Path(__file__).resolve().parents[1]


def real_batch(tokenizer, batch: int, seq: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` GSM8K questions, truncated/padded to exactly ``seq`` tokens (EOS appended)."""
    rows = (REPO / "data" / "gsm8k" / "train.jsonl").read_text().splitlines()
    texts = [json.loads(r)["question"] for r in rows[:batch]]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"][: seq - 1] + [tokenizer.eos_token_id] for t in texts]
    input_ids = torch.full((batch, seq), tokenizer.pad_token_id)
    mask = torch.zeros(batch, seq, dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return input_ids.to(device), mask.to(device)


def peak_bytes(device: str) -> int:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def train_worker(args: argparse.Namespace) -> dict:
    """One variant's step time and peak memory, measured in this (fresh) process."""
    from synthtune.components.backbone import load_backbone, row_major
    from synthtune.components.softsrv.prefix_lm import reconstruction_loss
    from synthtune.lightning_modules import SoftSRVModule

    torch.manual_seed(0)
    bb = load_backbone(args.backbone, args.dtype)
    ids, mask = real_batch(bb.tokenizer, args.batch, args.seq, args.device)
    if args.variant == "peft":
        from peft import PromptTuningConfig, TaskType, get_peft_model

        model = get_peft_model(row_major(bb.model), PromptTuningConfig(task_type=TaskType.CAUSAL_LM,
                                                            num_virtual_tokens=args.prompt_length))
        model.to(args.device)
        params = [p for p in model.parameters() if p.requires_grad]
        labels = ids.masked_fill(mask == 0, -100)

        def step() -> torch.Tensor:
            return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    else:
        module = SoftSRVModule(backbone=args.backbone, dtype=args.dtype, parameterization=args.variant,
                               prompt_length=args.prompt_length).to(args.device)
        module._contexts["train"] = torch.randn(args.batch, module.context_dim or 1)
        params = list(module.soft_prompt.parameters())
        index = torch.arange(args.batch)

        def step() -> torch.Tensor:
            return reconstruction_loss(module.backbone, module.prompts(index), ids, mask)

    optimizer = torch.optim.Adam(params, lr=1e-4)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base = peak_bytes(args.device)
    times = []
    for i in range(args.steps + 1):
        start = time.perf_counter()
        loss = step()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:  # the first step warms up
            times.append(time.perf_counter() - start)
    peak = peak_bytes(args.device) - (0 if args.device.startswith("cuda") else base)
    return {"variant": args.variant, "step_s": sorted(times)[len(times) // 2], "peak_mb": peak / 2**20,
            "trainable": sum(p.numel() for p in params), "loss": float(loss)}


def generation(args: argparse.Namespace) -> list[dict]:
    from synthtune.components.backbone import row_major
    from synthtune.lightning_modules import SoftSRVModule

    module = SoftSRVModule(backbone=args.backbone, dtype=args.dtype, parameterization="np",
                           prompt_length=args.prompt_length, max_new_tokens=args.new_tokens,
                           temperature=1.0, top_p=1.0).to(args.device).eval()
    model = module.backbone
    hf_model = row_major(copy.deepcopy(model))  # the peer: the weights as Hugging Face loads them
    rows = []
    for batch in args.gen_batches:
        prefix = module.prompts(torch.arange(batch)).detach()

        def ours() -> None:
            from synthtune.components.sampling import sample_from_prefix

            out = sample_from_prefix(model, prefix, list(range(batch)), args.new_tokens, eos_token_ids=[-1])
            assert all(len(o) == args.new_tokens for o in out)

        def hf() -> None:
            with torch.inference_mode():
                mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)
                out = hf_model.generate(inputs_embeds=prefix, attention_mask=mask, do_sample=True, temperature=1.0,
                                        top_p=1.0, top_k=0, max_new_tokens=args.new_tokens,
                                        min_new_tokens=args.new_tokens, pad_token_id=module.tokenizer.pad_token_id)
            assert out.shape[1] == args.new_tokens

        for name, fn in (("synthtune", ours), ("hf generate", hf)):
            fn()  # warm-up
            start = time.perf_counter()
            for _ in range(args.gen_repeats):
                fn()
            seconds = (time.perf_counter() - start) / args.gen_repeats
            rows.append({"path": name, "batch": batch, "tok_s": batch * args.new_tokens / seconds})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=64, help="real tokens per example")
    ap.add_argument("--prompt-length", type=int, default=32)
    ap.add_argument("--steps", type=int, default=4, help="timed training steps (after one warm-up)")
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--gen-batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--gen-repeats", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--variant", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker == "train":
        print(json.dumps(train_worker(args)))
        return 0

    info = machine_info()
    train_rows = []
    for variant in ("peft", "np", "mc"):
        cmd = [sys.executable, __file__, "--worker", "train", "--variant", variant, "--backbone", args.backbone,
               "--dtype", args.dtype, "--device", args.device, "--batch", str(args.batch), "--seq", str(args.seq),
               "--prompt-length", str(args.prompt_length), "--steps", str(args.steps)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        train_rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(train_rows[-1], flush=True)
    gen_rows = generation(args)

    peft = train_rows[0]
    lines = [SECTION, "", machine_markdown(info), "",
             f"Backbone {args.backbone} ({args.dtype}) on {args.device}; batch {args.batch} × {args.seq} real tokens, "
             f"prompt length {args.prompt_length}; median of {args.steps} Adam steps after a warm-up. Peak memory is "
             + ("CUDA max allocated." if args.device.startswith("cuda") else
                "the growth of the process's peak RSS over the loaded model (each variant in its own process)."),
             "", "| training step | trainable params | step (s) | × PEFT time | peak mem (MB) | × PEFT mem |",
             "|---|---:|---:|---:|---:|---:|"]
    names = {"peft": "PEFT PromptTuning", "np": "SoftSRV SS_NP", "mc": "SoftSRV SS_MC"}
    for r in train_rows:
        lines.append(f"| {names[r['variant']]} | {r['trainable']:,} | {r['step_s']:.2f} | "
                     f"{r['step_s'] / peft['step_s']:.2f} | {r['peak_mb']:.0f} | {r['peak_mb'] / max(peft['peak_mb'], 1e-9):.2f} |")
    np_row = train_rows[1]
    lines += ["", f"Target SS_NP ≤ 0.9× PEFT time: {'met' if np_row['step_s'] <= 0.9 * peft['step_s'] else 'missed'}; "
                  f"SS_NP peak memory ≤ PEFT: {'met' if np_row['peak_mb'] <= peft['peak_mb'] else 'missed'}.", "",
              f"| generation ({args.new_tokens} new tokens, prefix {args.prompt_length}) | batch | tokens/s | × HF at batch | × own batch 1 |",
              "|---|---:|---:|---:|---:|"]
    base1 = {r["path"]: r["tok_s"] for r in gen_rows if r["batch"] == gen_rows[0]["batch"]}
    hf_at = {r["batch"]: r["tok_s"] for r in gen_rows if r["path"] == "hf generate"}
    verdicts = []
    for r in gen_rows:
        lines.append(f"| {r['path']} | {r['batch']} | {r['tok_s']:.1f} | {r['tok_s'] / hf_at[r['batch']]:.2f} | "
                     f"{r['tok_s'] / base1[r['path']]:.2f} |")
        if r["path"] == "synthtune" and r["batch"] > 1:
            verdicts.append(f"batch {r['batch']}: ≥ HF {'met' if r['tok_s'] >= hf_at[r['batch']] else 'missed'}, "
                            f"≥ 6× batch 1 {'met' if r['tok_s'] >= 6 * base1['synthtune'] else 'missed'}")
    lines += ["", "Generation targets: " + "; ".join(verdicts) + "."]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    if not args.no_write:
        write_section(SECTION, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
