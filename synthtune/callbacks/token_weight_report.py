"""Show which tokens DawGen's weight net Φ_W weighs most, per label: the user's check that W makes sense.

The module's ``training_step`` returns ``{"loss", "token_weights"}`` (``[B, T]``, mean 1 over the
batch's valid tokens). The callback accumulates, per label and per token string, the mean weight
the token received since the last report, and every ``every_n_steps`` steps prints the ``top_k``
tokens of each label and appends them to ``<log_dir>/token_weights.log``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from synthtune.errors import SynthtuneError

log = logging.getLogger(__name__)

REPORT_FILE = "token_weights.log"

#: label → token → [sum of weights, count]
Tally = dict[int, dict[str, list[float]]]


def accumulate_token_weights(tally: Tally, weights: torch.Tensor, token_ids: torch.Tensor, mask: torch.Tensor,
                             labels: torch.Tensor, decode: Callable[[int], str]) -> None:
    """Add one batch's token weights to ``tally`` (pads are skipped)."""
    w, ids, valid = weights.detach().float().cpu(), token_ids.cpu(), mask.bool().cpu()
    for row, label in enumerate(labels.tolist()):
        per_token = tally.setdefault(int(label), defaultdict(lambda: [0.0, 0.0]))
        for tok, weight in zip(ids[row][valid[row]].tolist(), w[row][valid[row]].tolist()):
            entry = per_token[decode(tok)]
            entry[0] += weight
            entry[1] += 1


def top_weighted_tokens(tally: Tally, top_k: int, min_count: int = 1) -> dict[int, list[tuple[str, float, int]]]:
    """Per label, the ``top_k`` (token, mean weight, count) with the highest mean weight (ties: more frequent first)."""
    out = {}
    for label, per_token in sorted(tally.items()):
        rows = [(tok, s / c, int(c)) for tok, (s, c) in per_token.items() if c >= min_count]
        out[label] = sorted(rows, key=lambda r: (-r[1], -r[2], r[0]))[:top_k]
    return out


def format_report(top: dict[int, list[tuple[str, float, int]]], label_names: list[str] | None, step: int) -> str:
    """The report as plain text, one line per label."""
    lines = [f"=== highest-weighted tokens at step {step} (mean W; 1 = average token) ==="]
    for label, rows in top.items():
        name = label_names[label] if label_names and label < len(label_names) else str(label)
        cells = ", ".join(f"{tok!r} {w:.2f} (x{c})" for tok, w, c in rows)
        lines.append(f"{name}: {cells}")
    return "\n".join(lines) + "\n"


class TokenWeightReport(Callback):
    """Every ``every_n_steps`` steps, report the highest-weighted tokens of each label.

    Args:
        every_n_steps: report after every this many training steps.
        top_k: tokens shown per label.
        min_count: only tokens seen at least this often since the last report are ranked.
    """

    def __init__(self, every_n_steps: int = 50, top_k: int = 10, min_count: int = 1) -> None:
        for name, value in (("every_n_steps", every_n_steps), ("top_k", top_k), ("min_count", min_count)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SynthtuneError(f"TokenWeightReport: {name} must be an integer >= 1 (got {value!r}); pass a positive value")
        self.every_n_steps, self.top_k, self.min_count = every_n_steps, top_k, min_count
        self.tally: Tally = {}
        self.last_report: dict[int, list[tuple[str, float, int]]] = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not isinstance(outputs, dict) or "token_weights" not in outputs:
            return
        tokenizer = pl_module.tokenizer
        accumulate_token_weights(self.tally, outputs["token_weights"], batch["target_ids"], batch["target_mask"],
                                 batch["label"], lambda t: tokenizer.decode([t]))
        step = trainer.global_step
        if step % self.every_n_steps != 0:
            return
        self.last_report = top_weighted_tokens(self.tally, self.top_k, self.min_count)
        self.tally = {}
        if not trainer.is_global_zero:
            return
        names = list(getattr(trainer.datamodule, "label_names", []) or []) if trainer.datamodule else None
        text = format_report(self.last_report, names, step)
        log.info("%s", text.rstrip())
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / REPORT_FILE).open("a", encoding="utf-8") as fh:
            fh.write(text)
