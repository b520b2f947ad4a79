"""What every synthtune method shares: a frozen backbone that never enters a checkpoint.

A checkpoint holds the trainable parameters, the optimizer and the loop state, plus a small
``synthtune`` signature (method, backbone, shapes). Loading rebuilds the backbone from its spec and
refuses, with one line, a checkpoint whose signature differs from the run's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from synthtune.errors import NonFiniteLossError, SynthtuneError

SIGNATURE_KEY = "synthtune"


class FrozenBackboneModule(pl.LightningModule):
    """Base class: subclasses register their frozen model as ``self.backbone`` and describe what a
    compatible checkpoint must match in :meth:`checkpoint_signature`."""

    #: Attribute names of frozen submodules: dropped from checkpoints and always in eval mode.
    frozen_modules: tuple[str, ...] = ("backbone",)

    @property
    def frozen_prefixes(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name in self.frozen_modules)

    def __init__(self) -> None:
        super().__init__()
        # Checkpoints lack the frozen weights on purpose; the signature check replaces strictness.
        self.strict_loading = False

    def train(self, mode: bool = True) -> "FrozenBackboneModule":
        """Switch the trainable parts; frozen models stay in eval mode (no dropout) regardless."""
        super().train(mode)
        for name in self.frozen_modules:
            module = getattr(self, name, None)
            if module is not None:
                module.eval()
        return self

    def checkpoint_signature(self) -> dict[str, Any]:
        """What a checkpoint must have been made with to load into this module."""
        return {"method": type(self).__name__}

    def trainable_state_keys(self) -> set[str]:
        return {k for k in self.state_dict() if not k.startswith(self.frozen_prefixes)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        checkpoint["state_dict"] = {k: v for k, v in state.items() if not k.startswith(self.frozen_prefixes)}
        checkpoint[SIGNATURE_KEY] = self.checkpoint_signature()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get(SIGNATURE_KEY)
        if saved is None:
            raise SynthtuneError("this checkpoint was not written by synthtune (no signature); "
                                 "pass a checkpoint from `synthtune fit`")
        current = self.checkpoint_signature()
        diffs = [f"{k}={saved.get(k)!r} (this run: {current.get(k)!r})"
                 for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
        if diffs:
            raise SynthtuneError(
                "checkpoint does not match this run: " + ", ".join(diffs)
                + "; use the config.yaml saved next to the checkpoint (--config <run>/config.yaml)"
            )
        missing = self.trainable_state_keys() - set(checkpoint.get("state_dict", {}))
        if missing:
            raise SynthtuneError(f"checkpoint lacks trainable weights {sorted(missing)[:3]}; "
                                 f"it is damaged or from another synthtune version")

    def check_finite(self, loss: torch.Tensor, name: str = "loss") -> None:
        """Stop the run before a NaN/inf step is applied or checkpointed."""
        if not torch.isfinite(loss.detach()).all():
            ckpt_dir = Path(self.trainer.default_root_dir) / "checkpoints" if self._trainer else None
            raise NonFiniteLossError(
                f"{name} is {loss.item()} at step {self.global_step}; the run stopped and the last good "
                f"checkpoint (in {ckpt_dir}) is untouched. Lower the learning rate or use --model.dtype fp32, "
                f"then resume with --ckpt_path last"
            )


def file_fingerprint(path: str | None) -> str:
    """Short sha256 of a checkpoint file, so outputs record exactly which weights made them."""
    if not path or not Path(path).is_file():
        return "untrained"
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]
