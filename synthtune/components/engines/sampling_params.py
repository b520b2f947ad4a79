"""synthtune's sampling settings as the keyword arguments of one vLLM ``SamplingParams`` request.

A plain function, so that every option's way into vLLM is tested without vLLM installed.
"""

from __future__ import annotations

from typing import Any, Iterable

from synthtune.components.sampling_settings import SamplingSettings

#: ``SamplingParams.extra_args`` key of the repetition penalty (read by
#: ``synthtune.components.engines.repetition_penalty``, which cannot be imported without vLLM).
REPETITION_PENALTY_ARG = "synthtune_repetition_penalty"


def sampling_params_kwargs(settings: SamplingSettings, seed: int, eos_token_ids: Iterable[int]) -> dict[str, Any]:
    """The ``vllm.SamplingParams(**kwargs)`` of one sample.

    Args:
        settings: the call's sampling settings (temperature 0 is greedy, top-p 1 and repetition penalty 1 are off).
        seed: this sample's own seed (:func:`synthtune.components.sampling.sample_seed` of the run seed and the
            sample id), so the sample does not depend on the batch it runs in or on a resume.
        eos_token_ids: the tokens that end a sample, exactly those the native sampler stops at. vLLM's own EOS
            check is turned off (``ignore_eos``) so that a model whose generation config names another EOS
            stops at the same tokens under both engines.

    The repetition penalty goes in ``extra_args``, for synthtune's logits processor (it counts the generated
    tokens only, as the native sampler does); vLLM's own ``repetition_penalty``, which also counts the prompt,
    stays 1. The output is token ids (``detokenize`` off): synthtune decodes them with the backbone's tokenizer,
    as it does the native sampler's. ``top_k`` stays off (0), as in the native sampler.
    """
    return {
        "n": 1,
        "temperature": float(settings.temperature),
        "top_p": float(settings.top_p),
        "top_k": 0,
        "max_tokens": int(settings.max_new_tokens),
        "repetition_penalty": 1.0,
        "extra_args": {REPETITION_PENALTY_ARG: float(settings.repetition_penalty)},
        "seed": int(seed),
        "stop_token_ids": sorted({int(t) for t in eos_token_ids}),
        "ignore_eos": True,
        "detokenize": False,
    }
