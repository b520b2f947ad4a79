"""Reading a class label out of a frozen LM through label words (a verbalizer).

A template turns a row into text and ends (decoder-only LM) or has ``<extra_id_0>`` (T5) where
the label word would come. Each class has one label word; the class score is read from the LM:

* decoder-only: the input is ``[P; template(x)]``; the scores are the next-token logits of the
  label words at the last real position;
* T5: the encoder input is ``[P; template(x)]`` with ``<extra_id_0>`` in it. A span-corruption T5
  answers ``<extra_id_0> <span> <extra_id_1>``, so the decoder is fed ``<start> <extra_id_0>`` and the
  scores are the decoder logits of the label words at the position after the sentinel (pass the
  sentinel's id; without it the label word is read at the first target position).

With one token per label word, ``cross_entropy(scores, y)`` is the paper's loss
``L_ce(P) = −log Pr_θ([MASK] = y | [P; E])`` with the softmax over the label words. Label words
that split into several tokens are refused unless ``multi_token=True``; then a class's score is
``Σ_j log Pr(w_j | [P; E], w_<j)`` (teacher forced, one pass per class), which for one-token words
gives exactly the same softmax over classes as the single-token scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthtune.components.backbone import embed_tokens
from synthtune.components.padding import right_pad
from synthtune.errors import SynthtuneError

T5_MASK = "<extra_id_0>"


@dataclass(frozen=True)
class Verbalizer:
    """Label words and their token ids.

    Args:
        label_words: one word per class, in label-index order.
        token_ids: the word's token ids, one tuple per class.
    """

    label_words: tuple[str, ...]
    token_ids: tuple[tuple[int, ...], ...]

    @property
    def num_classes(self) -> int:
        return len(self.label_words)

    @property
    def single_token(self) -> bool:
        return all(len(ids) == 1 for ids in self.token_ids)

    def first_ids(self) -> Tensor:
        """[C] the single token id of each label word."""
        return torch.tensor([ids[0] for ids in self.token_ids], dtype=torch.long)


def build_verbalizer(tokenizer: Any, label_words: Sequence[str], label_names: Sequence[str] | None = None,
                     multi_token: bool = False) -> Verbalizer:
    """Tokenise ``label_words`` (one per class) and check them.

    Args:
        tokenizer: the backbone's tokenizer.
        label_words: one word per class; for decoder-only LMs usually with a leading space (" great").
        label_names: the task's label names, to check the count and to name classes in errors.
        multi_token: allow words that split into several tokens (scored as a sum of log-probs).
    """
    words = [str(w) for w in label_words]
    if label_names is not None and len(words) != len(label_names):
        raise SynthtuneError(f"got {len(words)} label words {words} for {len(label_names)} labels "
                             f"{list(label_names)}; give exactly one label word per label")
    if len(words) < 2:
        raise SynthtuneError(f"need at least two label words, got {words}; give one word per label")
    ids: list[tuple[int, ...]] = []
    for i, word in enumerate(words):
        tokens = tuple(int(t) for t in tokenizer(word, add_special_tokens=False)["input_ids"])
        name = label_names[i] if label_names is not None else str(i)
        if not tokens:
            raise SynthtuneError(f"label word {word!r} (label {name}) is empty after tokenisation; use a real word")
        if len(tokens) > 1 and not multi_token:
            raise SynthtuneError(
                f"label word {word!r} (label {name}) tokenises to {len(tokens)} tokens {list(tokens)} with this "
                f"backbone's tokenizer, but scoring reads one token per label; pick a word that is a single token "
                f"(try it with or without a leading space) or set --model.init_args.multi_token_labels true "
                f"to score the sum of its tokens' log-probabilities"
            )
        ids.append(tokens)
    if len(set(ids)) < len(ids):
        raise SynthtuneError(f"label words {words} do not tokenise to distinct tokens {ids}; "
                             f"use a different word for each label")
    return Verbalizer(tuple(words), tuple(ids))


# ------------------------------------------------------------------ inputs
def truncate_field(tokenizer: Any, text: str, max_tokens: int) -> str:
    """``text`` cut to at most ``max_tokens`` tokens (unchanged when shorter)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def render_row(template: str, row: dict[str, Any], tokenizer: Any, max_field_tokens: int,
               fields: Sequence[str]) -> str:
    """Fill ``template`` with the row's text fields, each truncated to ``max_field_tokens`` tokens,
    so that the end of the template (where the label word comes) is never cut off."""
    values = {f: truncate_field(tokenizer, str(row[f]).strip(), max_field_tokens) for f in fields}
    return template.format(**values)


def fill_label(rendered: str, label_word: str, is_encoder_decoder: bool) -> str:
    """A rendered template with its label word in place (for in-context demonstrations)."""
    if is_encoder_decoder:
        return rendered.replace(T5_MASK, label_word.strip())
    return rendered + label_word


def encode_texts(tokenizer: Any, texts: Sequence[str], context_ids: Sequence[int] = (),
                 append_eos: bool = False) -> tuple[Tensor, Tensor]:
    """Right-padded token ids ``[B, L]`` and attention mask for ``context_ids + tokens(text)``."""
    rows = []
    eos = [tokenizer.eos_token_id] if append_eos and tokenizer.eos_token_id is not None else []
    for text in texts:
        rows.append(list(context_ids) + list(tokenizer(text, add_special_tokens=False)["input_ids"]) + eos)
    return right_pad(rows, tokenizer.pad_token_id)


# ----------------------------------------------------------------- scoring
def _with_prefix(model: nn.Module, prefix: Tensor | None, input_ids: Tensor,
                 attention_mask: Tensor) -> tuple[Tensor, Tensor, int]:
    """``[P; E(x)]`` embeddings and mask, and the prompt length t (0 without a prompt)."""
    tokens = embed_tokens(model, input_ids)
    if prefix is None or prefix.shape[1] == 0:
        return tokens, attention_mask, 0
    prefix = prefix.to(tokens.dtype)
    if prefix.shape[0] != tokens.shape[0]:
        prefix = prefix.expand(tokens.shape[0], -1, -1)
    mask = torch.cat([attention_mask.new_ones(prefix.shape[:2]), attention_mask], dim=1)
    return torch.cat([prefix, tokens], dim=1), mask, prefix.shape[1]


def _label_rows(verbalizer: Verbalizer, device: torch.device) -> tuple[Tensor, Tensor]:
    """[C, n] right-padded label-word token ids and their mask."""
    ids, mask = right_pad(verbalizer.token_ids, 0)
    return ids.to(device), mask.bool().to(device)


def decoder_class_scores(model: nn.Module, verbalizer: Verbalizer, prefix: Tensor | None, input_ids: Tensor,
                         attention_mask: Tensor, per_token: bool = False) -> Tensor:
    """[B, C] class scores of a decoder-only LM whose input ends where the label word comes
    (summed per-token log-probs when a word has several tokens, or always with ``per_token``)."""
    inputs, mask, t = _with_prefix(model, prefix, input_ids, attention_mask)
    last = t + attention_mask.sum(dim=1) - 1  # position that predicts the label word
    rows = torch.arange(input_ids.shape[0], device=input_ids.device)
    head = model.get_output_embeddings()
    if verbalizer.single_token and not per_token:
        hidden = model.base_model(inputs_embeds=inputs, attention_mask=mask, use_cache=False).last_hidden_state
        h = hidden[rows, last]
        label_ids = verbalizer.first_ids().to(h.device)
        # Next-token logits of the label words only (a slice of the LM head): Pr([MASK] = v_y | [P; E])
        logits = h @ head.weight[label_ids].T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[label_ids]
        return logits.float()
    # Multi-token label words: one teacher-forced pass per class, sum of the words' token log-probs.
    word_ids, word_mask = _label_rows(verbalizer, input_ids.device)
    scores = []
    for c in range(verbalizer.num_classes):
        n = int(word_mask[c].sum())
        word = word_ids[c, :n]
        # Place the word right after each row's last real token (rows are right-padded).
        seq_len = inputs.shape[1] + n
        full = torch.zeros((inputs.shape[0], seq_len, inputs.shape[2]), dtype=inputs.dtype, device=inputs.device)
        full_mask = torch.zeros((inputs.shape[0], seq_len), dtype=mask.dtype, device=mask.device)
        word_embeds = embed_tokens(model, word).to(inputs.dtype)
        for b in range(inputs.shape[0]):
            end = int(last[b]) + 1
            full[b, :end] = inputs[b, :end]
            full[b, end:end + n] = word_embeds
            full_mask[b, :end + n] = 1
        hidden = model.base_model(inputs_embeds=full, attention_mask=full_mask, use_cache=False).last_hidden_state
        positions = last.unsqueeze(1) + torch.arange(n, device=last.device).unsqueeze(0)  # [B, n]
        h = hidden[rows.unsqueeze(1), positions]  # position end-1+j predicts word token j
        logp = F.log_softmax(head(h).float(), dim=-1)
        scores.append(logp.gather(-1, word.expand(inputs.shape[0], n).unsqueeze(-1)).squeeze(-1).sum(dim=1))
    return torch.stack(scores, dim=1)


def t5_class_scores(model: nn.Module, verbalizer: Verbalizer, prefix: Tensor | None, input_ids: Tensor,
                    attention_mask: Tensor, per_token: bool = False, sentinel_id: int | None = None) -> Tensor:
    """[B, C] class scores of an encoder-decoder LM (T5): encoder ``[P; template(x)]``, decoder
    ``<start> [sentinel]`` then the label word, scored from the position after the sentinel."""
    inputs, mask, _ = _with_prefix(model, prefix, input_ids, attention_mask)
    encoder_out = model.get_encoder()(inputs_embeds=inputs, attention_mask=mask)
    batch = input_ids.shape[0]
    head = [int(model.config.decoder_start_token_id)] + ([int(sentinel_id)] if sentinel_id is not None else [])
    head_ids = torch.tensor(head, dtype=torch.long, device=input_ids.device)
    at = len(head) - 1  # the decoder position that predicts the label word's first token
    if verbalizer.single_token and not per_token:
        decoder_ids = head_ids.expand(batch, len(head))
        logits = model(encoder_outputs=encoder_out, attention_mask=mask, decoder_input_ids=decoder_ids).logits
        return logits[:, at, verbalizer.first_ids().to(logits.device)].float()
    word_ids, word_mask = _label_rows(verbalizer, input_ids.device)
    scores = []
    for c in range(verbalizer.num_classes):
        n = int(word_mask[c].sum())
        word = word_ids[c, :n]
        decoder_ids = torch.cat([head_ids, word[:-1]]).expand(batch, at + n)
        logits = model(encoder_outputs=encoder_out, attention_mask=mask, decoder_input_ids=decoder_ids).logits[:, at:]
        logp = F.log_softmax(logits.float(), dim=-1)
        scores.append(logp.gather(-1, word.expand(batch, n).unsqueeze(-1)).squeeze(-1).sum(dim=1))
    return torch.stack(scores, dim=1)


def class_scores(model: nn.Module, verbalizer: Verbalizer, prefix: Tensor | None, input_ids: Tensor,
                 attention_mask: Tensor, per_token: bool = False, sentinel_id: int | None = None) -> Tensor:
    """[B, C] class scores for either model family (see the module docstring); ``sentinel_id`` is the
    id of ``<extra_id_0>`` for a span-corruption T5 (ignored by decoder-only LMs)."""
    if getattr(model.config, "is_encoder_decoder", False):
        return t5_class_scores(model, verbalizer, prefix, input_ids, attention_mask, per_token, sentinel_id)
    return decoder_class_scores(model, verbalizer, prefix, input_ids, attention_mask, per_token)
