"""The base of methods that steer a frozen LM: one backbone loader and one prompt initialisation.

The frozen backbone never enters a checkpoint (a checkpoint holds the prompts and whatever else
trains); loading rebuilds it from its spec, and the signature check refuses a mismatched checkpoint.

Every subclass also takes two speed options for large backbones on GPUs, added to its ``__init__``
by :meth:`FrozenBackboneModule.__init_subclass__` (so each method's CLI has them without repeating
them): ``gradient_checkpointing`` (recompute the frozen layers' activations in backward, so a long
soft prompt on a multi-billion-parameter model fits) and ``compile`` (``torch.compile`` the
backbone's forward). See ``docs/gpu.md``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from lightning.pytorch.trainer.states import TrainerFn

from synthtune.components.backbone import Backbone, load_backbone, random_token_embeddings, set_frozen_mode
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.base import SynthtuneModule

#: The speed options every frozen-LM method takes, with their help line.
SPEED_OPTIONS: dict[str, str] = {
    "gradient_checkpointing": "recompute the frozen backbone's activations in backward instead of storing "
                              "them (less memory, ~1/3 more compute; the prompt's gradient is unchanged).",
    "compile": "``torch.compile`` the frozen backbone's forward (pays off on GPUs for long runs).",
}
#: Lightning precisions that would cast the trainable prompts themselves to half precision.
_TRUE_HALF = ("bf16-true", "16-true")


def _with_speed_options(init):
    """``init`` plus the keyword-only :data:`SPEED_OPTIONS`; the outermost call records them before
    ``init`` loads the backbone, and hands the full argument set to ``save_hyperparameters``."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self, *args: Any, gradient_checkpointing: bool = False, compile: bool = False, **kwargs: Any):
        if "_speed" in self.__dict__:  # a subclass's __init__ already recorded the options
            return init(self, *args, **kwargs)
        object.__setattr__(self, "_speed", {"gradient_checkpointing": gradient_checkpointing, "compile": compile})
        if _given_hyperparameters.get() is not None:  # LightningCLI passes the full config itself
            return init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        hparams = {k: v for k, v in bound.arguments.items() if k != "self"} | self._speed
        token = _given_hyperparameters.set(hparams)
        try:
            init(self, *args, **kwargs)
        finally:
            _given_hyperparameters.reset(token)

    params = list(signature.parameters.values()) + [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
        for name in SPEED_OPTIONS]
    __init__.__signature__ = signature.replace(parameters=params)
    __init__.__annotations__ = {**init.__annotations__, **dict.fromkeys(SPEED_OPTIONS, "bool")}
    return __init__


def _with_speed_help(doc: str | None) -> str | None:
    """The class docstring with the speed options appended to its ``Args:`` section (the CLI help)."""
    if not doc or "Args:" not in doc:
        return doc
    indent = doc.split("Args:\n", 1)[1].splitlines()[0]
    indent = indent[: len(indent) - len(indent.lstrip())]
    lines = "".join(f"\n{indent}{name}: {help}" for name, help in SPEED_OPTIONS.items())
    return doc.rstrip() + lines + "\n"


class FrozenBackboneModule(SynthtuneModule):
    """Base class: :meth:`load_frozen_backbone` registers the frozen LM as ``self.backbone``."""

    #: Attribute names of frozen submodules: dropped from checkpoints and always in eval mode.
    frozen_modules: tuple[str, ...] = ("backbone",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _with_speed_options(cls.__dict__["__init__"])
            cls.__doc__ = _with_speed_help(cls.__doc__)

    @property
    def speed_options(self) -> dict[str, bool]:
        """``gradient_checkpointing`` and ``compile`` as this module was built with."""
        return dict(self.__dict__.get("_speed", dict.fromkeys(SPEED_OPTIONS, False)))

    @property
    def frozen_prefixes(self) -> tuple[str, ...]:
        return tuple(f"{name}." for name in self.frozen_modules)

    def load_frozen_backbone(self, backbone: str, dtype: str) -> Backbone:
        """Load (once per process) the frozen LM, with this module's speed options, and register it."""
        bb = load_backbone(backbone, dtype, **self.speed_options)
        self.backbone = bb.model
        self.tokenizer = bb.tokenizer
        return bb

    def random_token_prompt(self, shape: tuple[int, ...], seed: int) -> torch.Tensor:
        """A prompt initialisation ``[*shape, d]``: the real input vectors of random vocabulary tokens."""
        return random_token_embeddings(self.backbone, shape, seed)

    def configure_callbacks(self) -> list[pl.Callback]:
        """Refuse, before training, a precision that would turn the trainable prompts to half precision."""
        precision = str(self.trainer.precision)
        if self.trainer.state.fn == TrainerFn.FITTING and precision in _TRUE_HALF:
            raise SynthtuneError(
                f"--trainer.precision {precision} casts the trainable prompts to half precision; use "
                f"--trainer.precision bf16-mixed (add --model.init_args.dtype bf16 to halve the frozen weights)")
        return super().configure_callbacks()

    def train(self, mode: bool = True) -> "FrozenBackboneModule":
        """Switch the trainable parts; frozen models stay in eval mode (no dropout) regardless."""
        super().train(mode)
        for name in self.frozen_modules:
            module = getattr(self, name, None)
            if module is not None:
                set_frozen_mode(module)
        return self

    def trainable_state_keys(self) -> set[str]:
        return {k for k in self.state_dict() if not k.startswith(self.frozen_prefixes)}
