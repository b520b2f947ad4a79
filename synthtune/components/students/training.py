"""Train a student classifier on real rows, alone or paired with synthetic rows (Guo et al., Alg. 2).

Every strategy runs the same number of steps over the same real batches, so one thing differs between them:

* ``real``: each step one batch of real rows.
* ``real+syn``: each step the same real batch and a batch of synthetic rows; update δ = δ_real + δ_syn.
* ``paired``: the same two batches with gradient surgery: δ = δ_real + δ'_syn, where δ'_syn loses its
  component along δ_real when the two conflict (:func:`~synthtune.components.prompt_tuning.gradient_surgery.surgery_step`).

Batches cycle through a seeded permutation of each set, so every synthetic row is seen
``steps · syn_batch_size / len(syn)`` times. The dev split is scored every ``eval_every`` steps and the weights
of the best dev accuracy are kept next to the last ones (model selection).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synthtune.components.prompt_tuning.gradient_surgery import surgery_step
from synthtune.errors import SynthtuneError

STRATEGIES = ("real", "real+syn", "paired")


@dataclass
class StudentRun:
    """What one training run leaves: the last and the dev-selected weights, and what happened.

    Args:
        last: state dict after the last step.
        best: state dict of the best dev accuracy (the last one on ties; ``last`` without dev rows).
        best_step: the step ``best`` was taken at.
        dev_curve: (step, dev accuracy) at every evaluation.
        conflict_rate: share of paired steps whose two gradients conflicted (``paired`` only).
        syn_passes: how many times each synthetic row was seen on average.
        seconds: wall time of the run.
    """

    last: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    best_step: int
    dev_curve: list[tuple[int, float]] = field(default_factory=list)
    conflict_rate: float | None = None
    syn_passes: float = 0.0
    seconds: float = 0.0


def _cycle(n: int, batch_size: int, steps: int, rng: np.random.Generator) -> list[list[int]]:
    """``steps`` batches of indices into ``n`` rows: consecutive slices of fresh seeded permutations."""
    batches: list[list[int]] = []
    order: list[int] = []
    while len(batches) < steps:
        while len(order) < batch_size:
            order += rng.permutation(n).tolist()
        batches.append(order[:batch_size])
        order = order[batch_size:]
    return batches


@torch.no_grad()
def predict_labels(model: nn.Module, rows: Sequence[dict[str, Any]], batch_size: int = 128) -> list[int]:
    """The argmax class of every row."""
    was_training = model.training
    model.eval()
    out: list[int] = []
    for i in range(0, len(rows), batch_size):
        out += model(rows[i:i + batch_size]).argmax(-1).tolist()
    model.train(was_training)
    return out


def _accuracy(model: nn.Module, rows: Sequence[dict[str, Any]]) -> float:
    predicted = predict_labels(model, rows)
    return float(np.mean([p == r["label"] for p, r in zip(predicted, rows)]))


def _loss(model: nn.Module, rows: list[dict[str, Any]]) -> torch.Tensor:
    labels = torch.tensor([int(r["label"]) for r in rows])
    return F.cross_entropy(model(rows), labels)


def train_student(
    model: nn.Module,
    real: Sequence[dict[str, Any]],
    synthetic: Sequence[dict[str, Any]] = (),
    *,
    strategy: Literal["real", "real+syn", "paired"] = "real",
    steps: int = 200,
    batch_size: int = 16,
    syn_batch_size: int = 16,
    lr: float = 5e-5,
    head_lr: float = 1e-3,
    weight_decay: float = 0.01,
    dev: Sequence[dict[str, Any]] = (),
    eval_every: int = 25,
    seed: int = 0,
) -> StudentRun:
    """Train ``model`` (every parameter) with AdamW; returns its last and dev-selected weights.

    Args:
        model: a classifier taking a list of rows and returning logits (e.g. :class:`EncoderClassifier`).
        real: the real training rows (``label`` an index).
        synthetic: the synthetic rows (needed by ``real+syn`` and ``paired``).
        strategy: ``real``, ``real+syn`` or ``paired`` (gradient surgery).
        steps: optimizer steps (the budget: the same for every strategy of a comparison).
        batch_size: real rows per step (at most ``len(real)``).
        syn_batch_size: synthetic rows per step.
        lr: learning rate of the pretrained weights.
        head_lr: learning rate of parameters whose name starts with ``head`` (the new linear layer).
        weight_decay: AdamW weight decay.
        dev: rows scored every ``eval_every`` steps for model selection (empty: ``best`` is ``last``).
        eval_every: steps between dev evaluations.
        seed: seed of the batch order and of dropout (``torch.manual_seed``), so a run repeats exactly.
    """
    if strategy not in STRATEGIES:
        raise SynthtuneError(f"unknown strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if strategy != "real" and not synthetic:
        raise SynthtuneError(f"strategy {strategy!r} needs synthetic rows; pass some or use strategy real")
    if not real or steps < 1:
        raise SynthtuneError("need at least one real row and steps ≥ 1")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    real_batches = _cycle(len(real), min(batch_size, len(real)), steps, rng)
    syn_batches = _cycle(len(synthetic), syn_batch_size, steps, rng) if strategy != "real" else []
    head = [p for n, p in model.named_parameters() if n.startswith("head")]
    body = [p for n, p in model.named_parameters() if not n.startswith("head") and p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": head, "lr": head_lr}],
                                  weight_decay=weight_decay)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    model.train()
    best_acc, best_step, best = -1.0, 0, None
    curve: list[tuple[int, float]] = []
    conflicts = 0
    for step in range(1, steps + 1):
        optimizer.zero_grad(set_to_none=True)
        loss_real = _loss(model, [real[i] for i in real_batches[step - 1]])
        if strategy == "real":
            loss_real.backward()
        elif strategy == "real+syn":
            # δ = δ_real + δ_syn (both losses are batch means)
            (loss_real + _loss(model, [synthetic[i] for i in syn_batches[step - 1]])).backward()
        else:
            loss_syn = _loss(model, [synthetic[i] for i in syn_batches[step - 1]])
            # Alg. 2: δ = δ_real + δ'_syn, δ'_syn projected off δ_real when they conflict
            conflicts += surgery_step(params, loss_real, loss_syn, eps=1.0)["conflict"]
        optimizer.step()
        if dev and (step % eval_every == 0 or step == steps):
            acc = _accuracy(model, dev)
            curve.append((step, acc))
            if acc >= best_acc:
                best_acc, best_step, best = acc, step, copy.deepcopy(model.state_dict())
    last = copy.deepcopy(model.state_dict())
    return StudentRun(last=last, best=best if best is not None else last, best_step=best_step or steps,
                      dev_curve=curve, conflict_rate=conflicts / steps if strategy == "paired" else None,
                      syn_passes=steps * syn_batch_size / len(synthetic) if syn_batches else 0.0,
                      seconds=time.perf_counter() - start)
