"""How a classifier reads a row through a frozen (or tuned) LM: a template, label words and the model family.

:func:`build_reader` checks a template and label words (given, or the task's defaults, which the caller
looks up in ``synthtune.tasks.TEMPLATES``; for T5 a default template gets ``<extra_id_0>`` appended, where the
label is read) against the tokenizer and the model family, and returns a :class:`LabelWordReader` that renders
rows, encodes them and scores the classes with :func:`~synthtune.components.prompt_tuning.verbalizer.class_scores`.
For T5 the label word is scored after the sentinel a span-corruption T5 emits first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from synthtune.components.prompt_tuning.verbalizer import (
    T5_MASK,
    Verbalizer,
    build_verbalizer,
    class_scores,
    encode_texts,
    fill_label,
    render_row,
)
from synthtune.errors import SynthtuneError


@dataclass(frozen=True)
class LabelWordReader:
    """A resolved prompt format: render and score rows of a labelled task.

    Args:
        template: the template (with ``<extra_id_0>`` for T5).
        fields: the row fields the template uses.
        verbalizer: the label words and their token ids.
        tokenizer: the backbone's tokenizer.
        is_encoder_decoder: the backbone is a T5-style encoder-decoder.
        sentinel_id: id of ``<extra_id_0>`` (T5), the token a span-corruption T5 emits before the label.
        max_field_tokens: each field is cut to this many tokens before rendering.
    """

    template: str
    fields: tuple[str, ...]
    verbalizer: Verbalizer
    tokenizer: Any
    is_encoder_decoder: bool
    sentinel_id: int | None
    max_field_tokens: int

    def render(self, row: dict[str, Any]) -> str:
        """The row as prompt text (fields truncated), ending where the label word comes."""
        return render_row(self.template, row, self.tokenizer, self.max_field_tokens, self.fields)

    def demonstration(self, row: dict[str, Any]) -> str:
        """The row rendered with its own label word in place (an in-context example)."""
        return fill_label(self.render(row), self.verbalizer.label_words[row["label"]], self.is_encoder_decoder)

    def encode(self, rows: Sequence[dict[str, Any]], context_ids: Sequence[int] = ()) -> tuple[Tensor, Tensor]:
        """Right-padded ids and mask of ``context_ids`` + each rendered row (EOS appended for T5)."""
        return encode_texts(self.tokenizer, [self.render(r) for r in rows], context_ids,
                            append_eos=self.is_encoder_decoder)

    def scores(self, model: nn.Module, prefix: Tensor | None, ids: Tensor, mask: Tensor) -> Tensor:
        """[B, C] class scores of the encoded rows, with an optional soft prompt ``prefix``."""
        return class_scores(model, self.verbalizer, prefix, ids, mask, sentinel_id=self.sentinel_id)


def build_reader(tokenizer: Any, is_encoder_decoder: bool, template: str, label_words: Sequence[str],
                 fields: Sequence[str], multi_token: bool = False, max_field_tokens: int = 128) -> LabelWordReader:
    """Check a prompt format and build its reader.

    Args:
        tokenizer: the backbone's tokenizer.
        is_encoder_decoder: the backbone is T5-style.
        template: the template (the task's default already filled in by the caller when none was given).
        label_words: one word per label.
        fields: the row fields the template uses (``synthtune.records.template_fields``).
        multi_token: allow label words of several tokens.
        max_field_tokens: each field is cut to this many tokens.
    """
    fields = tuple(fields)
    if not fields:
        raise SynthtuneError(f"template {template!r} uses no field; put {{text}} or {{text_a}}/{{text_b}} in it")
    if is_encoder_decoder and T5_MASK not in template:
        raise SynthtuneError(f"template {template!r} has no {T5_MASK}, which marks where T5 reads the label; "
                             f"add it, e.g. \"{{text}} It was {T5_MASK}.\"")
    sentinel = tokenizer.convert_tokens_to_ids(T5_MASK) if is_encoder_decoder else None
    if is_encoder_decoder and (sentinel is None or sentinel == tokenizer.unk_token_id):
        raise SynthtuneError(f"the T5 tokenizer has no {T5_MASK} token; use a span-corruption T5 checkpoint")
    verbalizer = build_verbalizer(tokenizer, list(label_words), multi_token=multi_token)
    return LabelWordReader(template, fields, verbalizer, tokenizer, is_encoder_decoder, sentinel, max_field_tokens)
