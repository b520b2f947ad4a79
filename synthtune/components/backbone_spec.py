"""Which frozen LM a method loads and how it runs: one settings type shared by every method that has a backbone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from synthtune.errors import SynthtuneError


@dataclass(frozen=True)
class BackboneSpec:
    """The backbone of one run (``--model.init_args.backbone``; a name alone, ``backbone: smollm2-135m``, sets
    only the name).

    Args:
        name: ``smollm2-135m`` (bundled), a local model folder, a ``.gguf`` file or a Hugging Face hub id.
        dtype: weights of the backbone: ``fp32`` or ``bf16`` (trainable prompts stay fp32).
        compile: ``torch.compile`` the backbone's forward (pays off on GPUs for long runs).
        gradient_checkpointing: recompute the frozen backbone's activations in backward instead of storing
            them (less memory for long prompts on large models, ~1/3 more compute; the gradient is unchanged;
            methods that train a prompt only).
    """

    name: str
    dtype: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SynthtuneError(f"backbone name must be a model name, folder or file, got {self.name!r}; "
                                 f"set --model.init_args.backbone.name")
        if self.dtype not in ("fp32", "bf16"):
            raise SynthtuneError(f"backbone dtype must be fp32 or bf16, got {self.dtype!r}; "
                                 f"set --model.init_args.backbone.dtype")

    def name_and_dtype_only(self, method: str) -> BackboneSpec:
        """This spec, for a method that trains its own copy of the backbone (which takes the name and dtype only)."""
        unsupported = [key for key in ("compile", "gradient_checkpointing") if getattr(self, key)]
        if unsupported:
            raise SynthtuneError(f"{method} trains its own copy of the backbone and does not support backbone."
                                 f"{unsupported[0]}; drop --model.init_args.backbone.{unsupported[0]}")
        return self


def backbone_spec(value: BackboneSpec | str | Mapping[str, Any]) -> BackboneSpec:
    """``value`` as a :class:`BackboneSpec`: a name alone is the spec with that name; a mapping (a checkpoint's
    hyper-parameters) is its fields."""
    if isinstance(value, BackboneSpec):
        return value
    if isinstance(value, str):
        return BackboneSpec(value)
    if isinstance(value, Mapping):
        return BackboneSpec(**value)
    raise SynthtuneError(f"backbone must be a name or a mapping with a name, got {value!r}")


def backbone_name(value: Any) -> str:
    """The model name in a backbone option's value, however it is given: a name, a :class:`BackboneSpec`, a
    mapping, or the command-line parser's form of a spec (``class_path`` + ``init_args``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, BackboneSpec):
        return value.name
    fields = getattr(value, "init_args", None) or value
    return fields["name"] if isinstance(fields, Mapping) else fields.name
