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
from synthtune.components.sampling import Sampled
from synthtune.components.sampling_settings import SamplingSettings


def render_prompt(tokenizer, text: str, use_chat_template: bool = True, system: str | None = None) -> str:
    """``text`` as a user turn under the chat template (when the tokenizer has one), else unchanged."""
    if not use_chat_template or not getattr(tokenizer, "chat_template", None):
        return text
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def eos_token_ids(model, tokenizer) -> set[int]:
    """The tokens that end a sample: the tokenizer's EOS and those of the model's generation config."""
    eos = {tokenizer.eos_token_id}
    extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos.update([extra] if isinstance(extra, int) else (extra or []))
    return eos


def decode_samples(tokenizer, sampled: Sampled) -> tuple[list[str], list[bool]]:
    """Each sample's text (special tokens dropped, stripped) and whether it stopped at the length cap instead of
    at EOS (``hit_cap``)."""
    return ([tokenizer.decode(t, skip_special_tokens=True).strip() for t in sampled.tokens],
            [not f for f in sampled.finished])


def prompt_token_ids(tokenizer, prompts: Sequence[str], use_chat_template: bool = True, system: str | None = None,
                     max_prompt_tokens: int = 1024) -> list[list[int]]:
    """The token ids of each text prompt, rendered (:func:`render_prompt`) and cut to its last
    ``max_prompt_tokens`` tokens."""
    rendered = [render_prompt(tokenizer, p, use_chat_template, system) for p in prompts]
    return [tokenizer(r, add_special_tokens=not use_chat_template)["input_ids"][-max_prompt_tokens:] for r in rendered]


@torch.inference_mode()
def generate_from_text(
    model,
    tokenizer,
    prompts: Sequence[str],
    seeds: Sequence[int],
    settings: SamplingSettings,
    use_chat_template: bool = True,
    system: str | None = None,
    max_prompt_tokens: int = 1024,
    batch_size: int | None = None,
    engine: Engine | None = None,
) -> tuple[list[str], list[bool]]:
    """One sampled continuation per prompt (special tokens stripped) and whether each stopped at
    ``settings.max_new_tokens`` instead of at EOS.

    ``batch_size`` is that of :func:`sample_from_prefix`. The repetition penalty counts only the generated
    tokens, not the prompt's (Hugging Face's also penalises the prompt, which would push a reply away from the
    examples it was given). ``engine`` samples the tokenized prompts (``None``: the native sampler).
    """
    if not prompts:
        return [], []
    ids = prompt_token_ids(tokenizer, prompts, use_chat_template, system, max_prompt_tokens)
    sampled = (engine or NativeEngine()).sample_ids(model, ids, list(seeds), settings, eos_token_ids(model, tokenizer),
                                                    tokenizer.pad_token_id, batch_size=batch_size)
    return decode_samples(tokenizer, sampled)
