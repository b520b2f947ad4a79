"""What decodes a generator's samples: synthtune's own sampler (``native``, the default) or vLLM (``vllm``).

Generators call one small interface (:class:`Engine`: ``sample_embeds`` for input vectors, ``sample_ids`` for
tokenized text) built by :func:`build_engine` from ``--model.init_args.engine`` and ``engine_options``; vLLM is
imported only when it is chosen.
"""

from synthtune.components.engines.build import build_engine
from synthtune.components.engines.engine import Engine, EngineName
from synthtune.components.engines.sampling_params import sampling_params_kwargs

__all__ = ["Engine", "EngineName", "build_engine", "sampling_params_kwargs"]
