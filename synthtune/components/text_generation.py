"""Sampling continuations of natural-language prompts from a frozen decoder (template methods).

Prompts are rendered with the tokenizer's chat template when asked (and when the model has one),
tokenized, and sampled by an engine (:mod:`synthtune.components.engines`: the native sampler left-pads,
embeds and runs :func:`synthtune.components.sampling.sample_from_prefix`; vLLM takes the token ids), so
each output depends only on its prompt and its seed, whatever the batch.
"""

from __future__ import annotations

from typing import Sequence

import torch

from synthtune.components.engines import Engine
from synthtune.components.engines.native import NativeEngine
from synthtune.components.sampling_settings import SamplingSettings


def render_prompt(tokenizer, text: str, use_chat_template: bool = True, system: str | None = None) -> str:
    """``text`` as a user turn under the chat template (when the tokenizer has one), else unchanged."""
    if not use_chat_template or not getattr(tokenizer, "chat_template", None):
        return text
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@torch.inference_mode()
def generate_from_text(
    model,
    tokenizer,
    prompts: Sequence[str],
    seeds: Sequence[int],
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_p: float = 1.0,
    use_chat_template: bool = True,
    system: str | None = None,
    max_prompt_tokens: int = 1024,
    batch_size: int | None = None,
    return_finished: bool = False,
    repetition_penalty: float = 1.0,
    engine: Engine | None = None,
) -> list[str] | tuple[list[str], list[bool]]:
    """One sampled continuation per prompt (special tokens stripped).

    ``batch_size`` and ``return_finished`` are those of :func:`sample_from_prefix`: with
    ``return_finished`` the result is ``(texts, finished)``, ``finished[i]`` saying whether text ``i``
    ended with EOS rather than at ``max_new_tokens``. ``repetition_penalty`` counts only the generated
    tokens, not the prompt's (Hugging Face's also penalises the prompt, which would push a reply away from
    the examples it was given). ``engine`` samples the tokenized prompts (``None``: the native sampler).
    """
    if not prompts:
        return ([], []) if return_finished else []
    rendered = [render_prompt(tokenizer, p, use_chat_template, system) for p in prompts]
    ids = [tokenizer(r, add_special_tokens=not use_chat_template)["input_ids"][-max_prompt_tokens:] for r in rendered]
    eos = {tokenizer.eos_token_id}
    generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(generation_eos, int):
        eos.add(generation_eos)
    elif generation_eos:
        eos.update(generation_eos)
    settings = SamplingSettings(temperature, top_p, max_new_tokens, repetition_penalty=repetition_penalty)
    sampled = (engine or NativeEngine()).sample_ids(model, ids, list(seeds), settings, eos, tokenizer.pad_token_id,
                                                    batch_size=batch_size)
    texts = [tokenizer.decode(t, skip_special_tokens=True).strip() for t in sampled.tokens]
    return (texts, sampled.finished) if return_finished else texts
