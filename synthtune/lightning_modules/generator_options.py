"""What every generator takes besides its ``sampling`` bundle: the engine that decodes its prompts (and, for one
more release, the flat sampling options of earlier releases)."""

from __future__ import annotations

from typing import Any

from synthtune.components.backbone import Backbone
from synthtune.components.engines import Engine, EngineName, build_engine
from synthtune.lightning_modules.flat_options import FlatSamplingOptions


class GeneratorOptions(FlatSamplingOptions):
    """Mixin of a generator (SoftSRV, DawGen, the template baselines and answers, SynAlign); its ``__init__``
    passes ``**kwargs`` on and calls :meth:`start_engine` once the backbone is loaded."""

    engine: Engine

    def __init__(self, *, engine: EngineName = "native", engine_options: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        """
        Args:
            engine: what decodes in predict: ``native`` (synthtune's sampler) or ``vllm`` (the module's prompts, soft
                prompts as ``prompt_embeds`` or text as token ids, go to vLLM; needs vLLM installed; texts differ
                from the native sampler's, see the README).
            engine_options: ``vllm.LLM`` arguments for ``engine: vllm`` (``tensor_parallel_size``,
                ``data_parallel_size``, ``gpu_memory_utilization``, ``max_model_len``, ...).
        """
        super().__init__(**kwargs)
        self._engine_choice = (engine, engine_options)

    def start_engine(self, bb: Backbone) -> None:
        """Build the chosen engine for the loaded backbone ``bb`` (vLLM is imported only when chosen)."""
        self.engine = build_engine(*self._engine_choice, bb)
