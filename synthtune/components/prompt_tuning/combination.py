"""How real and synthetic examples are combined during prompt tuning (Guo et al., Sec. 4).

One switch, ``strategy``, picks the batch plan of an epoch:

* ``real``          real examples only (the baseline);
* ``syn``           synthetic examples only (no real example is trained on; the real few-shot
  set still serves model selection on its dev split);
* ``real+syn``      the two sets concatenated and shuffled together; batches mix both kinds;
* ``real+syn+ls``   as ``real+syn``, with label smoothing on the synthetic examples only;
* ``real->syn``     within each epoch all real batches first, then all synthetic batches;
* ``syn->real``     the opposite order;
* ``paired``        every step has one real batch and one synthetic batch (for gradient surgery);
  the epoch lasts as many steps as the longer set has batches and the shorter set cycles (each
  pass over it in a fresh order).

:func:`plan_epoch` returns the epoch as a list of steps ``{"real": [indices] | None,
"syn": [indices] | None}``; indices point into the real and the synthetic set respectively. The plan
is a pure function of ``(strategy, sizes, batch_size, epoch, seed)``, so every rank of a
distributed run can build the same plan, and a resumed run rebuilds it exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from synthtune.errors import SynthtuneError

Step = dict[str, "list[int] | None"]

STRATEGIES: tuple[str, ...] = ("real", "syn", "real+syn", "real+syn+ls", "real->syn", "syn->real", "paired")
_NEEDS_SYNTHETIC = frozenset(STRATEGIES) - {"real"}


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` if known, else raise a one-line error listing the valid names."""
    if strategy not in STRATEGIES:
        raise SynthtuneError(f"unknown combination strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    return strategy


def needs_synthetic(strategy: str) -> bool:
    """Whether ``strategy`` uses the synthetic set."""
    return check_strategy(strategy) in _NEEDS_SYNTHETIC


def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
    # One independent stream per (seed, epoch, purpose): the plan never depends on call order.
    return np.random.default_rng([int(seed), int(epoch), int(stream)])


def _batches(order: np.ndarray, batch_size: int) -> list[list[int]]:
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def _cycled_batches(n: int, batch_size: int, n_steps: int, seed: int, epoch: int, stream: int) -> list[list[int]]:
    """``n_steps`` batches from a set of ``n`` examples, reshuffled at each pass over it."""
    out: list[list[int]] = []
    cycle = 0
    while len(out) < n_steps:
        rng = _rng(seed, epoch, stream + 100 * cycle)
        out.extend(_batches(rng.permutation(n), batch_size))
        cycle += 1
    return out[:n_steps]


def plan_epoch(strategy: str, n_real: int, n_syn: int, batch_size: int, epoch: int, seed: int) -> list[Step]:
    """The batch plan of one epoch.

    Args:
        strategy: one of :data:`STRATEGIES`.
        n_real: number of real examples (at least 1 unless ``strategy == "syn"``).
        n_syn: number of synthetic examples (at least 1 unless ``strategy == "real"``).
        batch_size: examples per batch; with ``paired`` each of the two batches of a step has this size
            (the last batch of a pass may be smaller).
        epoch: epoch number; each epoch gets a different shuffle.
        seed: base seed; the same arguments always give the same plan.

    Returns:
        A list of steps ``{"real": list[int] | None, "syn": list[int] | None}``; ``None`` means the
        step has no example of that kind.
    """
    check_strategy(strategy)
    if batch_size < 1:
        raise SynthtuneError(f"batch_size must be >= 1, got {batch_size}; pass a positive batch size")
    if n_real < 1 and strategy != "syn":
        raise SynthtuneError(
            f"combination strategy {strategy!r} got an empty real set; provide real training examples"
        )
    if n_syn < 0:
        raise SynthtuneError(f"n_syn must be >= 0, got {n_syn}; pass the size of the synthetic set")
    if strategy in _NEEDS_SYNTHETIC and n_syn < 1:
        raise SynthtuneError(
            f"combination strategy {strategy!r} needs synthetic examples but the synthetic set is empty; "
            f"generate synthetic data first or use strategy 'real'"
        )

    if strategy == "real":
        return [{"real": b, "syn": None} for b in _batches(_rng(seed, epoch, 0).permutation(n_real), batch_size)]
    if strategy == "syn":
        return [{"real": None, "syn": b} for b in _batches(_rng(seed, epoch, 2).permutation(n_syn), batch_size)]

    if strategy in ("real+syn", "real+syn+ls"):
        # Pooled index space: [0, n_real) are real, [n_real, n_real + n_syn) are synthetic.
        steps: list[Step] = []
        for batch in _batches(_rng(seed, epoch, 0).permutation(n_real + n_syn), batch_size):
            real = [i for i in batch if i < n_real]
            syn = [i - n_real for i in batch if i >= n_real]
            steps.append({"real": real or None, "syn": syn or None})
        return steps

    real_batches = _batches(_rng(seed, epoch, 1).permutation(n_real), batch_size)
    syn_batches = _batches(_rng(seed, epoch, 2).permutation(n_syn), batch_size)
    if strategy == "real->syn":
        return [{"real": b, "syn": None} for b in real_batches] + [{"real": None, "syn": b} for b in syn_batches]
    if strategy == "syn->real":
        return [{"real": None, "syn": b} for b in syn_batches] + [{"real": b, "syn": None} for b in real_batches]

    # paired: as many steps as the longer set has batches; the shorter one cycles.
    n_steps = max(len(real_batches), len(syn_batches))
    if len(real_batches) < n_steps:
        real_batches = _cycled_batches(n_real, batch_size, n_steps, seed, epoch, stream=1)
    if len(syn_batches) < n_steps:
        syn_batches = _cycled_batches(n_syn, batch_size, n_steps, seed, epoch, stream=2)
    return [{"real": r, "syn": s} for r, s in zip(real_batches, syn_batches)]


class CombinedBatches:
    """Iterable over the steps of the current epoch; call :meth:`set_epoch` before each epoch.

    Args:
        strategy: one of :data:`STRATEGIES`.
        n_real: number of real examples.
        n_syn: number of synthetic examples.
        batch_size: examples per batch.
        seed: base seed of every epoch's plan.
    """

    def __init__(self, strategy: str, n_real: int, n_syn: int, batch_size: int, seed: int = 0) -> None:
        self.strategy, self.n_real, self.n_syn = strategy, n_real, n_syn
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self._plan = plan_epoch(strategy, n_real, n_syn, batch_size, 0, seed)

    def set_epoch(self, epoch: int) -> None:
        """Rebuild the plan for ``epoch``."""
        self.epoch = epoch
        self._plan = plan_epoch(self.strategy, self.n_real, self.n_syn, self.batch_size, epoch, self.seed)

    def __len__(self) -> int:
        return len(self._plan)

    def __iter__(self) -> Iterator[Step]:
        return iter([dict(step) for step in self._plan])


def smoothing_for_step(step: Step, strategy: str, smoothing: float) -> Tensor:
    """Per-example label smoothing of a step, in the order real examples then synthetic ones.

    Only ``real+syn+ls`` smooths, and only its synthetic examples; every other example gets 0.

    Args:
        step: a step from :func:`plan_epoch`.
        strategy: the strategy that built the step.
        smoothing: the smoothing ε_ls in [0, 1) applied to synthetic examples.
    """
    check_strategy(strategy)
    if not 0.0 <= float(smoothing) < 1.0:
        raise SynthtuneError(f"label smoothing must be in [0, 1), got {smoothing!r}; pass e.g. 0.1")
    n_real = len(step.get("real") or [])
    n_syn = len(step.get("syn") or [])
    syn_value = float(smoothing) if strategy == "real+syn+ls" else 0.0
    return torch.cat([torch.zeros(n_real), torch.full((n_syn,), syn_value)])


def smoothed_cross_entropy(logits: Tensor, targets: Tensor, smoothing_per_example: Tensor) -> Tensor:
    """Mean cross-entropy with a label-smoothing amount per example.

    Example ``i`` is scored against the target distribution ``(1 − s_i)·onehot(y_i) + s_i/C``, i.e.
    ``(1 − s_i)·(−log p_{i,y_i}) + s_i·mean_c(−log p_{i,c})`` — with one ``s`` for all examples this
    equals ``F.cross_entropy(..., label_smoothing=s)``.

    Args:
        logits: ``[N, C]`` class scores.
        targets: ``[N]`` integer labels.
        smoothing_per_example: ``[N]`` smoothing amounts in [0, 1).
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1] or smoothing_per_example.shape != logits.shape[:1]:
        raise SynthtuneError(
            f"smoothed_cross_entropy needs logits [N, C], targets [N], smoothing [N]; got "
            f"{tuple(logits.shape)}, {tuple(targets.shape)}, {tuple(smoothing_per_example.shape)}; "
            f"pass one target and one smoothing value per row of logits"
        )
    s = smoothing_per_example.to(device=logits.device, dtype=torch.float32)
    if bool(((s < 0) | (s >= 1)).any()):
        raise SynthtuneError("label smoothing values must be in [0, 1); fix the smoothing_per_example tensor")
    logp = F.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    uniform = -logp.mean(dim=-1)
    # Label smoothing: target = (1 − s) onehot + s / C
    return ((1 - s) * nll + s * uniform).mean()
