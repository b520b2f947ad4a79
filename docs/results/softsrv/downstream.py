"""Downstream of docs/results/softsrv.md: LoRA-tune the bundled SmolLM2-135M on one method's synthetic questions and
measure the negative log-likelihood per token of the real GSM8K test questions after tuning.

The paper's headline (Table 1) fine-tunes Gemma 2B on each method's question-answer pairs. A 135M model cannot
answer GSM8K, but it can move towards GSM8K's questions: the closer a method's questions are to the real ones,
the lower the NLL of the real test questions after tuning on them. Every method gets the same number of rows
(its first ``rows`` by id), the same steps, batch size, learning rate, LoRA rank and seed; the real train
questions are the ceiling and the untuned model (``--untuned``) the floor.

    python docs/results/softsrv/downstream.py --train runs/results-softsrv/ss_mc/seed0/samples.jsonl \\
        --output runs/results-softsrv/downstream/ss_mc.seed0.tune0.json --seed 0
    python docs/results/softsrv/downstream.py --untuned --output runs/results-softsrv/downstream/untuned.json

NLL per token: each question is tokenized without special tokens and followed by EOS; the loss counts every
token after the first (the first has no left context) and the EOS, summed over all test questions and divided
by the number of such tokens. A plain training loop (not a Lightning run): one small LoRA fit per (method,
seed), each a single JSON result, so a killed grid resumes at the next missing file.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from synthtune.components.backbone import DEFAULT_BACKBONE, load_tokenizer
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.sft import add_lora, default_lora_targets, load_trainable_lm
from synthtune.paths import atomic_write_json


def first_rows(path: str | Path, field: str, rows: int, every: bool = False) -> list[str]:
    """The ``field`` texts of the ``rows`` rows of a JSONL file with the smallest ids (file order without ids).

    Args:
        path: the method's samples.
        field: the text field.
        rows: how many rows every method contributes (at least).
        every: return every row (in that order), not only the first ``rows``.
    """
    if not Path(path).is_file():
        raise SynthtuneError(f"{path} not found; run the job that writes it first")
    lines = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").split("\n") if line.strip()]
    if any(field not in row for row in lines):
        raise SynthtuneError(f"{path}: a row lacks field {field!r}; pass --field")
    if all("id" in row for row in lines):
        lines = sorted(lines, key=lambda row: row["id"])
    if len(lines) < rows:
        raise SynthtuneError(f"{path} holds {len(lines)} rows, fewer than --rows {rows}; every method needs as many")
    return [row[field] for row in (lines if every else lines[:rows])]


def encode(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids of each text without special tokens, followed by EOS, cut to ``max_length``.

    Args:
        tokenizer: the model's tokenizer.
        texts: the texts.
        max_length: longest sequence kept, EOS included.
    """
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [(seq + [tokenizer.eos_token_id])[:max_length] for seq in ids]


def batch_loss(model: torch.nn.Module, batch: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, int]:
    """Summed next-token NLL of a batch of sequences (right-padded) and the number of predicted tokens.

    Args:
        model: a causal LM.
        batch: token id sequences.
        pad_id: id used for padding (masked out).
    """
    width = max(len(seq) for seq in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, seq in enumerate(batch):
        ids[i, :len(seq)] = torch.tensor(seq)
        mask[i, :len(seq)] = 1
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    target, keep = ids[:, 1:], mask[:, 1:].bool()
    # NLL = -Σ_t log p(x_t | x_<t) over the real tokens t ≥ 2
    nll = torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
    return nll, int(keep.sum())


@torch.no_grad()
def nll_per_token(model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int,
                  batch_size: int = 16) -> tuple[float, int]:
    """NLL per token of ``sequences`` under ``model`` (eval mode) and the number of tokens it averages over.

    Args:
        model: a causal LM.
        sequences: token id sequences (from :func:`encode`).
        pad_id: padding id.
        batch_size: sequences per forward pass.
    """
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))  # similar lengths pad less
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        nll, n = batch_loss(model, [sequences[i] for i in order[start:start + batch_size]], pad_id)
        total, count = total + float(nll), count + n
    return total / count, count


def lora_tune(model: torch.nn.Module, sequences: Sequence[Sequence[int]], pad_id: int, steps: int, batch_size: int,
              lr: float, seed: int, log_every: int = 0) -> list[float]:
    """Train ``model``'s trainable (LoRA) parameters with AdamW on the mean next-token loss for ``steps`` steps
    over seeded reshuffled passes of ``sequences``; returns each step's loss per token.

    Args:
        model: a causal LM whose only trainable parameters are the adapters.
        sequences: training token ids (from :func:`encode`).
        pad_id: padding id.
        steps: optimizer steps.
        batch_size: sequences per step.
        lr: AdamW learning rate.
        seed: seed of the batch order (and of torch's generator).
        log_every: print the loss every this many steps (0: never).
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise SynthtuneError("the model has no trainable parameters; add LoRA adapters first")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    order: list[int] = []
    losses = []
    for step in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(sequences)))
            rng.shuffle(fresh)
            order += fresh
        batch, order = [sequences[i] for i in order[:batch_size]], order[batch_size:]
        nll, n = batch_loss(model, batch, pad_id)
        loss = nll / n
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            print(f"  step {step + 1}/{steps} loss {sum(losses[-log_every:]) / log_every:.4f}", flush=True)
    model.eval()
    return losses


def main(
    output: str,
    train: Optional[str] = None,
    field: str = "text",
    untuned: bool = False,
    evaluation: str = "data/gsm8k/test.jsonl",
    evaluation_field: str = "question",
    backbone: str = DEFAULT_BACKBONE,
    rows: int = 500,
    steps: int = 100,
    batch_size: int = 8,
    lr: float = 1e-3,
    lora_r: int = 8,
    lora_alpha: int = 16,
    max_length: int = 192,
    seed: int = 0,
    eval_limit: Optional[int] = None,
) -> dict[str, Any]:
    """LoRA-tune on one method's questions (or nothing, with --untuned) and write the NLL per token of the test
    questions to OUTPUT (JSON).

    Args:
        output: the result file (skipped when it exists).
        train: the method's synthetic (or real) questions, JSONL.
        field: text field of the train rows.
        untuned: measure the model as it is (the floor); no --train.
        evaluation: the real questions the NLL is measured on.
        evaluation_field: their text field.
        backbone: the model tuned (bundled alias, folder or .gguf).
        rows: rows of --train used (its first, by id); the same for every method.
        steps: optimizer steps.
        batch_size: questions per step.
        lr: AdamW learning rate of the adapters.
        lora_r: LoRA rank.
        lora_alpha: LoRA scaling alpha.
        max_length: longest question kept in tokens, EOS included.
        seed: seed of the adapter initialisation and the batch order.
        eval_limit: score only the first N evaluation questions (smoke runs).
    """
    out = Path(output)
    if out.exists():
        print(f"{out} exists; skipped")
        return json.loads(out.read_text(encoding="utf-8"))
    if untuned == (train is not None):
        raise SynthtuneError("pass exactly one of --train FILE (tune on it) and --untuned (the floor)")
    start = time.perf_counter()
    tokenizer = load_tokenizer(backbone)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eval_texts = first_rows(evaluation, evaluation_field, 1, every=True)[:eval_limit]
    eval_ids = encode(tokenizer, eval_texts, max_length)
    torch.manual_seed(seed)
    model = load_trainable_lm(backbone, "fp32")
    result: dict[str, Any] = {"backbone": backbone, "evaluation": evaluation, "num_eval": len(eval_texts),
                              "max_length": max_length, "seed": seed}
    if train is not None:
        texts = first_rows(train, field, rows)
        model = add_lora(model, lora_r, lora_alpha, 0.0, default_lora_targets(model))
        losses = lora_tune(model, encode(tokenizer, texts, max_length), pad_id, steps, batch_size, lr, seed,
                           log_every=max(1, steps // 10))
        tenth = max(1, steps // 10)
        result.update(train=train, field=field, rows=rows, distinct_rows=len(set(texts)), steps=steps,
                      batch_size=batch_size, lr=lr, lora_r=lora_r, lora_alpha=lora_alpha,
                      train_loss_first=sum(losses[:tenth]) / tenth, train_loss_last=sum(losses[-tenth:]) / tenth)
    else:
        result.update(train=None, untuned=True)
    nll, tokens = nll_per_token(model, eval_ids, pad_id)
    result.update(nll_per_token=nll, perplexity=math.exp(nll), eval_tokens=tokens,
                  seconds=round(time.perf_counter() - start, 1))
    atomic_write_json(out, result)
    print(f"NLL per token of {len(eval_texts)} test questions: {nll:.4f} ({tokens} tokens); {out}")
    return result


if __name__ == "__main__":
    import sys

    from jsonargparse import CLI

    try:
        CLI(main, as_positional=False)
    except SynthtuneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
