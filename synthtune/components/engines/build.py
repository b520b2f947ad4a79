"""The engine a generator's ``--model.init_args.engine`` names, built once: the one place that knows every
:class:`~synthtune.components.engines.engine.Engine` (each imports the interface, never this file)."""

from __future__ import annotations

from typing import Any, Mapping

from synthtune.components.engines.engine import Engine
from synthtune.errors import SynthtuneError


def build_engine(name: str, options: Mapping[str, Any] | None, backbone) -> Engine:
    """The engine ``name`` for ``backbone`` (a :class:`~synthtune.components.backbone.Backbone`).

    Args:
        name: ``native`` (synthtune's sampler) or ``vllm``.
        options: keyword arguments of ``vllm.LLM`` for ``vllm`` (``tensor_parallel_size``, ``data_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``, ``max_num_seqs``, ...); must be empty for ``native``.
        backbone: the frozen model the generator loaded (its folder and dtype are what vLLM loads).
    """
    options = dict(options or {})
    if name == "native":
        if options:
            raise SynthtuneError(f"engine_options {sorted(options)} are vLLM's; drop --model.init_args.engine_options "
                                 f"or pass --model.init_args.engine vllm")
        from synthtune.components.engines.native import NativeEngine

        return NativeEngine()
    if name == "vllm":
        from synthtune.components.engines.vllm_engine import VLLMEngine

        return VLLMEngine(backbone, options)
    raise SynthtuneError(f"unknown engine {name!r}; use native or vllm")
