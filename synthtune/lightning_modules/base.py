"""What every synthtune method shares: signed checkpoints, the finite-loss guard and the data hand-over.

A checkpoint holds the trainable state (:meth:`SynthtuneModule.trainable_state_keys`), the optimizer
and the loop state, plus a small ``synthtune`` signature (method, backbone, shapes). Loading refuses,
with one line, a checkpoint whose signature differs from the run's. What the model needs from its data
arrives once, as a :class:`~synthtune.contract.DataInfo`, in :meth:`SynthtuneModule.connect`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.contract import ConnectData, DataInfo, check_kind
from synthtune.lightning_modules.flat_options import FLAT_BACKBONE, FLAT_SAMPLING
from synthtune.errors import NonFiniteLossError, SynthtuneError
from synthtune.registry import method

SIGNATURE_KEY = "synthtune"
#: Flat options of earlier releases, folded into ``backbone`` / ``sampling`` (see ``flat_options``).
FLAT_OPTIONS = FLAT_BACKBONE + FLAT_SAMPLING


@method
class SynthtuneModule(pl.LightningModule):
    """Base class of every method: subclasses describe a compatible checkpoint in
    :meth:`checkpoint_signature` and read their data's description in :meth:`connect`."""

    #: Output ids each predict item owns (the datamodule skips an item once any of its ids is written).
    ids_per_item: int = 1
    #: The kind of data the method reads (a ``DataInfo`` subclass); :meth:`connect` refuses any other in one line.
    data_kind: type[DataInfo] = DataInfo

    def __init__(self) -> None:
        super().__init__()
        # Checkpoints may lack frozen weights on purpose; the signature check replaces strictness.
        self.strict_loading = False
        self.data_info = self.data_kind()
        self.checkpoint_fingerprint = "untrained"

    def save_hyperparameters(self, *args: Any, ignore: Any = None, frame: Any = None, logger: bool = True) -> None:
        """Lightning's, with the option bundles kept as plain values: ``backbone`` and ``sampling`` are the
        module's resolved ``backbone_spec`` / ``sampling`` (flat options of earlier releases folded in), so a
        checkpoint's hyper-parameters rebuild the module and hold no synthtune class."""
        super().save_hyperparameters(*args, ignore=ignore, frame=frame or inspect.currentframe().f_back,
                                     logger=logger)
        bundles = {"backbone": getattr(self, "backbone_spec", None), "sampling": getattr(self, "sampling", None)}
        bundles = {key: dataclasses.asdict(b) for key, b in bundles.items() if isinstance(b, (BackboneSpec, SamplingSettings))}
        own = inspect.signature(type(self).__init__).parameters  # a method's own option of that name stays
        for hparams in (self._hparams, self._hparams_initial):
            for key in FLAT_OPTIONS:
                if key not in own:
                    hparams.pop(key, None)
            hparams.update(bundles)

    # ----------------------------------------------------------- the data
    def configure_callbacks(self) -> list[pl.Callback]:
        """Every Trainer run hands the data's description to :meth:`connect` (see ``synthtune.contract``).
        A Trainer that already holds one (``test`` after ``fit`` on the same Trainer) keeps it, so Lightning
        has nothing to override and says nothing."""
        if self._trainer is not None and any(isinstance(c, ConnectData) for c in self._trainer.callbacks):
            return []
        return [ConnectData()]

    def connect(self, info: DataInfo) -> None:
        """Receive what the data provides, once per run, before ``setup``: refuse data of another kind than
        ``data_kind`` in one line and keep it; subclasses call this first, then check and use the fields."""
        check_kind(type(self).__name__, self.data_kind, info)
        self.data_info = info

    # -------------------------------------------------------- checkpoints
    def checkpoint_signature(self) -> dict[str, Any]:
        """What a checkpoint must have been made with to load into this module."""
        return {"method": type(self).__name__}

    def trainable_state_keys(self) -> set[str]:
        """The state a checkpoint holds (all of it unless a subclass keeps frozen weights out)."""
        return set(self.state_dict())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        keep = self.trainable_state_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}
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

    def on_predict_start(self) -> None:
        """Record which weights this predict run uses (written into every row's ``params``)."""
        self.checkpoint_fingerprint = file_fingerprint(self.trainer.ckpt_path)

    # ------------------------------------------------------------- guard
    def check_finite(self, loss: torch.Tensor, name: str = "loss") -> None:
        """Stop the run before a NaN/inf step is applied or checkpointed."""
        if not torch.isfinite(loss.detach()).all():
            ckpt_dir = Path(self.trainer.default_root_dir) / "checkpoints" if self._trainer else None
            raise NonFiniteLossError(
                f"{name} is {loss.item()} at step {self.global_step}; the run stopped and the last good "
                f"checkpoint (in {ckpt_dir}) is untouched. Lower the learning rate or use --model.init_args.backbone.dtype fp32, "
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
