"""Per-label soft prompts Q = {Q_l} (DawGen, Alg. 1) and how a label's prompt conditions a frozen LM.

``LabelPrompts`` holds Q as one ``[L, t, d]`` parameter. A label-conditioned example has an
optional *context* c (``text_a`` of a sentence-pair task) and a *target* x (``text`` or ``text_b``),
and only the target is scored:

* decoder-only: the decoder reads ``[Q_l ; E(c) ; E(x)]``; every row is packed without gaps, so
  the positions match generation, where the prefix ``[Q_l ; E(c)]`` is left-padded;
* T5 (encoder-decoder): the encoder reads ``[Q_l ; E(c)]`` and the decoder generates x.

``label_token_scores`` returns ``log Pr(x_j | x_<j, c; Q_l)`` for every target token together with
the hidden state that predicts it (the source of the pooled representation Z of L_dist).
``token_representations`` gives the prompt-free frozen representation h_j that Φ_W scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from synthtune.components.backbone import embed_tokens
from synthtune.components.padding import right_pad
from synthtune.errors import SynthtuneError


class LabelPrompts(nn.Module):
    """Q: one trainable soft prompt of ``t`` vectors per label, stored as ``[L, t, d]``.

    Args:
        num_labels: L, the number of labels.
        prompt_length: t, soft tokens per label.
        hidden_size: d, the backbone's embedding size.
        init: optional starting value, ``[L, t, d]`` or ``[t, d]`` (shared by every label).
        init_std: standard deviation of a random start when ``init`` is not given.
    """

    def __init__(self, num_labels: int, prompt_length: int, hidden_size: int, init: Tensor | None = None,
                 init_std: float = 0.02) -> None:
        super().__init__()
        if num_labels < 2:
            raise SynthtuneError(f"num_labels must be at least 2 for label-conditioned prompts, got {num_labels}")
        if prompt_length < 1:
            raise SynthtuneError(f"prompt_length must be a positive number of soft tokens, got {prompt_length}")
        shape = (num_labels, prompt_length, hidden_size)
        if init is None:
            value = torch.randn(shape) * init_std
        elif tuple(init.shape) == shape[1:]:
            value = init.detach().float().unsqueeze(0).repeat(num_labels, 1, 1)
        elif tuple(init.shape) == shape:
            value = init.detach().float().clone()
        else:
            raise SynthtuneError(f"LabelPrompts init has shape {tuple(init.shape)}; expected {shape} or {shape[1:]}")
        self.prompts = nn.Parameter(value)

    @property
    def num_labels(self) -> int:
        return self.prompts.shape[0]

    @property
    def prompt_length(self) -> int:
        return self.prompts.shape[1]

    def forward(self, labels: Tensor) -> Tensor:
        """Q_{y_i} for every example: ``[B, t, d]``."""
        return self.prompts[labels.long()]

    @torch.no_grad()
    def set_tail(self, label: int, vectors: Tensor) -> None:
        """Overwrite the last ``len(vectors)`` soft tokens of label ``label`` (e.g. with its name's embeddings)."""
        n = min(vectors.shape[0], self.prompt_length)
        if n:
            self.prompts[label, self.prompt_length - n:] = vectors[-n:].to(self.prompts.dtype)


@dataclass
class LabelScores:
    """Output of :func:`label_token_scores`.

    Args:
        logprobs: ``[B, T]`` log Pr(x_j | x_<j, c; Q), zero at padding.
        hidden: ``[B, T, d]`` the decoder state that predicts x_j.
    """

    logprobs: Tensor
    hidden: Tensor


def _empty_context(target_ids: Tensor) -> tuple[Tensor, Tensor]:
    empty = target_ids.new_zeros((target_ids.shape[0], 0))
    return empty, empty


def _pack(context_ids: Tensor, context_mask: Tensor, target_ids: Tensor, target_mask: Tensor,
          pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rows ``c_1..c_nc x_1..x_nt`` right-padded, their mask, and where each row's target starts."""
    n_ctx = context_mask.long().sum(1)
    n_tgt = target_mask.long().sum(1)
    rows = [context_ids[row, :nc].tolist() + target_ids[row, :nt].tolist()
            for row, (nc, nt) in enumerate(zip(n_ctx.tolist(), n_tgt.tolist()))]
    ids, mask = right_pad(rows, pad_id)
    return ids.to(target_ids.device), mask.to(device=target_ids.device, dtype=target_mask.dtype), n_ctx


def _score(head: nn.Module, hidden: Tensor, target_ids: Tensor, target_mask: Tensor) -> Tensor:
    valid = target_mask.bool()
    logits = head(hidden[valid])  # only the positions that predict a real target token
    logits = logits if logits.dtype == torch.float64 else logits.float()  # bf16 → fp32; fp64 stays
    picked = -F.cross_entropy(logits, target_ids[valid], reduction="none")
    out = torch.zeros(target_ids.shape, dtype=picked.dtype, device=picked.device)
    return out.masked_scatter(valid, picked)


def _t5_head_input(model: nn.Module, hidden: Tensor) -> Tensor:
    scale = getattr(model.config, "scale_decoder_outputs", getattr(model.config, "tie_word_embeddings", False))
    return hidden * (model.model_dim ** -0.5) if scale else hidden


def label_token_scores(model: nn.Module, prompt: Tensor, target_ids: Tensor, target_mask: Tensor,
                       context_ids: Tensor | None = None, context_mask: Tensor | None = None) -> LabelScores:
    """log Pr(x_j | x_<j, c; Q) and the predicting hidden states, for a decoder-only LM or a T5.

    Args:
        model: the frozen Hugging Face model (causal LM or T5ForConditionalGeneration).
        prompt: ``[B, t, d]`` the soft prompt of each row (Q_{y_i}, or any label's prompt).
        target_ids: ``[B, T]`` right-padded target tokens x (EOS included).
        target_mask: ``[B, T]`` 1 on real target tokens.
        context_ids: ``[B, Tc]`` right-padded context tokens c (``text_a``), or ``None``.
        context_mask: ``[B, Tc]`` 1 on real context tokens.
    """
    if context_ids is None or context_mask is None:
        context_ids, context_mask = _empty_context(target_ids)
    embed = model.get_input_embeddings()
    prompt = prompt.to(embed.weight.dtype)
    b, t = prompt.shape[:2]
    if getattr(model.config, "is_encoder_decoder", False):
        enc_in = torch.cat([prompt, embed_tokens(model, context_ids)], dim=1)
        enc_mask = torch.cat([context_mask.new_ones((b, t)), context_mask], dim=1)
        encoded = model.get_encoder()(inputs_embeds=enc_in, attention_mask=enc_mask).last_hidden_state
        decoder_in = model._shift_right(target_ids)
        # Decoder position j reads x_<j and predicts x_j: it is real exactly where x_j is.
        hidden = model.get_decoder()(input_ids=decoder_in, attention_mask=target_mask, encoder_hidden_states=encoded,
                                     encoder_attention_mask=enc_mask, use_cache=False).last_hidden_state
        return LabelScores(_score(model.lm_head, _t5_head_input(model, hidden), target_ids, target_mask), hidden)
    pad_id = int(getattr(model.config, "pad_token_id", None) or 0)
    ids, mask, n_ctx = _pack(context_ids, context_mask, target_ids, target_mask, pad_id)
    inputs = torch.cat([prompt, embed_tokens(model, ids)], dim=1)
    full_mask = torch.cat([mask.new_ones((b, t)), mask], dim=1)
    states = model.base_model(inputs_embeds=inputs, attention_mask=full_mask, use_cache=False).last_hidden_state
    # Position t-1+nc+j (last prompt vector / context / x_<j) predicts target token x_j.
    pos = (t - 1 + n_ctx).unsqueeze(1) + torch.arange(target_ids.shape[1], device=ids.device).unsqueeze(0)
    pos = pos.clamp_max(states.shape[1] - 1)
    hidden = states.gather(1, pos.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
    return LabelScores(_score(model.get_output_embeddings(), hidden, target_ids, target_mask), hidden)


def all_label_logprobs(model: nn.Module, prompts: Tensor, target_ids: Tensor, target_mask: Tensor,
                       context_ids: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
    """``[B, L, T]`` log Pr(x_j | x_<j, c; Q_l) of every row under every label's prompt (one batched forward).

    Args:
        model: the frozen model.
        prompts: ``[L, t, d]`` all labels' prompts.
        target_ids, target_mask, context_ids, context_mask: as in :func:`label_token_scores`.
    """
    n_labels, b = prompts.shape[0], target_ids.shape[0]
    if context_ids is None or context_mask is None:
        context_ids, context_mask = _empty_context(target_ids)
    rep = lambda x: x.repeat(n_labels, *([1] * (x.dim() - 1)))  # noqa: E731 - label-major copies of the batch
    prompt = prompts.repeat_interleave(b, dim=0)
    scores = label_token_scores(model, prompt, rep(target_ids), rep(target_mask), rep(context_ids), rep(context_mask))
    return scores.logprobs.view(n_labels, b, -1).transpose(0, 1)


@torch.no_grad()
def token_representations(model: nn.Module, target_ids: Tensor, target_mask: Tensor,
                          context_ids: Tensor | None = None, context_mask: Tensor | None = None) -> Tensor:
    """h_j, the frozen model's prompt-free representation of each target token: ``[B, T, d]``.

    Decoder-only: the last hidden state at x_j reading ``c ; x_≤j``; T5: the encoder's state of x_j
    reading x alone. Independent of Q and of Φ_W, so it is computed once per batch.
    """
    if getattr(model.config, "is_encoder_decoder", False):
        return model.get_encoder()(input_ids=target_ids, attention_mask=target_mask).last_hidden_state
    if context_ids is None or context_mask is None:
        context_ids, context_mask = _empty_context(target_ids)
    pad_id = int(getattr(model.config, "pad_token_id", None) or 0)
    ids, mask, n_ctx = _pack(context_ids, context_mask, target_ids, target_mask, pad_id)
    states = model.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
    pos = n_ctx.unsqueeze(1) + torch.arange(target_ids.shape[1], device=ids.device).unsqueeze(0)
    pos = pos.clamp_max(states.shape[1] - 1)
    return states.gather(1, pos.unsqueeze(-1).expand(-1, -1, states.shape[-1]))


def pooled_representation(hidden: Tensor, weights: Tensor, mask: Tensor) -> Tensor:
    """Z_i = Σ_j W_j h_ij / Σ_j W_j over the valid tokens of each row: ``[B, d]`` (the W·Z of L_dist)."""
    w = (weights * mask).to(hidden.dtype)
    # DawGen L_dist input: token-weighted mean of the prompted representations
    return (w.unsqueeze(-1) * hidden).sum(1) / w.sum(1, keepdim=True).clamp_min(1e-8)


def label_prefix(prompt: Tensor, context_embeds: Tensor | None = None,
                 context_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The generation prefix ``[Q_l ; E(c)]`` per row, left-padded, and its mask.

    Args:
        prompt: ``[B, t, d]`` each row's label prompt.
        context_embeds: ``[B, Tc, d]`` embedded, right-padded context (``text_a``), or ``None``.
        context_mask: ``[B, Tc]`` 1 on real context tokens.
    """
    b, t, d = prompt.shape
    if context_embeds is None or context_mask is None or context_embeds.shape[1] == 0:
        return prompt, torch.ones((b, t), dtype=torch.long, device=prompt.device)
    n_ctx = context_mask.long().sum(1)
    width = t + int(n_ctx.max())
    prefix = prompt.new_zeros((b, width, d))
    mask = torch.zeros((b, width), dtype=torch.long, device=prompt.device)
    for row, nc in enumerate(n_ctx.tolist()):
        start = width - t - nc  # left padding: every row ends where generation starts
        prefix[row, start:start + t] = prompt[row]
        prefix[row, start + t:] = context_embeds[row, :nc].to(prompt.dtype)
        mask[row, start:] = 1
    return prefix, mask


def label_loglik_ratio(logprobs_all_labels: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Per-example mean token log-likelihood under the own label's prompt minus the mean over the other labels'.

    Args:
        logprobs_all_labels: ``[B, L, T]`` from :func:`all_label_logprobs`.
        labels: ``[B]`` the label each example was generated for.
        mask: ``[B, T]`` valid target tokens.
    """
    per_label = (logprobs_all_labels * mask.unsqueeze(1)).sum(-1) / mask.sum(-1, keepdim=True).clamp_min(1)
    own = per_label.gather(1, labels.long().view(-1, 1)).squeeze(1)
    others = (per_label.sum(1) - own) / (per_label.shape[1] - 1)
    # log Pr(x | Q_y) − mean_{l≠y} log Pr(x | Q_l), per token
    return own - others
