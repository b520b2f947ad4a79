"""The flat model options of earlier releases (``--model.init_args.temperature``, ``dtype``, ...), still accepted
for one release: each given one moves into its nested bundle (``sampling.temperature``, ``backbone.dtype``) with a
one-line deprecation warning that names the new key. A flat option overrides the bundle's field (it is what an
old config or command line meant).

A method takes them by inheriting the mixin and passing ``**kwargs`` on to ``super().__init__``; jsonargparse
follows that call, so the old keys still parse from configs and the command line.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from synthtune.components.backbone_spec import BackboneSpec, backbone_spec
from synthtune.components.sampling_settings import SamplingSettings, sampling_settings
from synthtune.usage_errors import HIDDEN_WHEN_UNSET

log = logging.getLogger(__name__)

Bundle = TypeVar("Bundle")

#: The flat options, each under the bundle it moves into.
FLAT_BACKBONE = ("dtype", "compile", "gradient_checkpointing")
FLAT_SAMPLING = ("temperature", "top_p", "max_new_tokens", "repetition_penalty")
HIDDEN_WHEN_UNSET.update(FLAT_BACKBONE + FLAT_SAMPLING)  # a saved or printed config shows them only when given


def _moved(bundle: Bundle, section: str, flat: dict[str, Any]) -> Bundle:
    """``bundle`` with the given flat options set, each announced in one line."""
    given = {key: value for key, value in flat.items() if value is not None}
    for key, value in given.items():
        log.warning("--model.init_args.%s is deprecated and goes in the next release: use --model.init_args.%s.%s "
                    "(in a config, %s: {%s: %s})", key, section, key, section, key, value)
    return dataclasses.replace(bundle, **given) if given else bundle


class FlatBackboneOptions:
    """Accepts the old flat backbone options and moves them into ``backbone``."""

    def __init__(self, *, dtype: Literal["fp32", "bf16"] | None = None, compile: bool | None = None,
                 gradient_checkpointing: bool | None = None, **kwargs: Any) -> None:
        """
        Args:
            dtype: deprecated: use ``backbone.dtype``.
            compile: deprecated: use ``backbone.compile``.
            gradient_checkpointing: deprecated: use ``backbone.gradient_checkpointing``.
        """
        super().__init__(**kwargs)
        self._flat_backbone = {"dtype": dtype, "compile": compile, "gradient_checkpointing": gradient_checkpointing}

    def flat_backbone(self, backbone: BackboneSpec | str | Mapping[str, Any]) -> BackboneSpec:
        """The ``backbone`` option as a spec, with the flat backbone options given to ``__init__`` moved in."""
        return _moved(backbone_spec(backbone), "backbone", self._flat_backbone)


class FlatSamplingOptions:
    """Accepts the old flat sampling options and moves them into ``sampling``."""

    def __init__(self, *, temperature: float | None = None, top_p: float | None = None,
                 max_new_tokens: int | None = None, repetition_penalty: float | None = None, **kwargs: Any) -> None:
        """
        Args:
            temperature: deprecated: use ``sampling.temperature``.
            top_p: deprecated: use ``sampling.top_p``.
            max_new_tokens: deprecated: use ``sampling.max_new_tokens``.
            repetition_penalty: deprecated: use ``sampling.repetition_penalty``.
        """
        super().__init__(**kwargs)
        self._flat_sampling = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens,
                               "repetition_penalty": repetition_penalty}

    def flat_sampling(self, sampling: SamplingSettings | Mapping[str, Any]) -> SamplingSettings:
        """The ``sampling`` option as settings, with the flat sampling options given to ``__init__`` moved in."""
        return _moved(sampling_settings(sampling), "sampling", self._flat_sampling)

