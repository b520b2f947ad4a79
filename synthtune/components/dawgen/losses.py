"""DawGen losses (Alg. 1) as pure functions over tensors.

Setting: a frozen LM g_ϕ, one soft prompt Q_l per label l (``Q`` is ``[L, t, d]``), and real
examples ``x`` with labels ``y``. ``token_logprobs[i, j] = log Pr(x_{i,j} | x_{i,<j}; Q_{y_i})``.

* L_wGen: token-weighted generation loss that trains Q given the weights W.
* L_disc: discriminative loss, evaluated after a virtual step on Q, that trains W (the outer
  objective of the bi-level problem).
* L_dist: hinge loss on pooled representations that keeps same-label examples closer than
  different-label ones.
* L_DawGen = E_l[L_wGen(Q_l)] + λ · L_dist: the weighted generation loss is averaged over each
  label's tokens, then over the labels of the batch (so a label with few or short examples counts as
  much as the others); λ = 1 is the paper's objective.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from synthtune.errors import SynthtuneError


def _valid_mask(mask: Tensor, shape: torch.Size, what: str) -> Tensor:
    if mask.shape != shape:
        raise SynthtuneError(
            f"{what}: mask shape {tuple(mask.shape)} does not match {tuple(shape)}; pass a [B, T] mask"
        )
    valid = mask.bool()
    if not bool(valid.any()):
        raise SynthtuneError(f"{what}: the batch has no valid tokens; check the attention mask / truncation")
    return valid


def weighted_generation_loss(token_logprobs: Tensor, weights: Tensor, mask: Tensor,
                             labels: Tensor | None = None) -> Tensor:
    """L_wGen = −mean over valid tokens of W_j · log Pr(x_j | x_<j; Q_y); with ``labels``,
    E_l[L_wGen(Q_l)]: the mean over each label's valid tokens, then the mean over the labels present.

    Args:
        token_logprobs: ``[B, T]`` log-probabilities of the real tokens under their own label's prompt.
        weights: ``[B, T]`` token weights W (e.g. from :class:`TokenWeightNet`; all ones = plain NLL).
        mask: ``[B, T]`` 1 on valid tokens, 0 on padding.
        labels: ``[B]`` each example's label, to average per label first (DawGen's E_l); ``None``
            averages over all valid tokens of the batch.
    """
    if weights.shape != token_logprobs.shape:
        raise SynthtuneError(
            f"weighted_generation_loss: weights {tuple(weights.shape)} and log-probs "
            f"{tuple(token_logprobs.shape)} differ in shape; pass one weight per token"
        )
    valid = _valid_mask(mask, token_logprobs.shape, "weighted_generation_loss")
    terms = (weights * token_logprobs).masked_fill(~valid, 0.0)
    if labels is None:
        # DawGen L_wGen = −(1/N) Σ_j W_j log Pr(x_j | x_<j; Q_y)
        return -terms.sum() / valid.sum()
    if labels.shape != token_logprobs.shape[:1]:
        raise SynthtuneError(f"weighted_generation_loss: labels {tuple(labels.shape)} for {token_logprobs.shape[0]} "
                             f"rows; pass one label per row")
    present, row_label = torch.unique(labels, return_inverse=True)
    sums = terms.new_zeros(len(present)).index_add(0, row_label, terms.sum(dim=1))
    counts = terms.new_zeros(len(present)).index_add(0, row_label, valid.sum(dim=1).to(terms.dtype))
    per_label = -sums / counts.clamp_min(1)  # L_wGen(Q_l) = −(1/N_l) Σ_{j: y=l} W_j log Pr(x_j | x_<j; Q_l)
    has_tokens = counts > 0
    return per_label[has_tokens].mean()  # E_l[L_wGen(Q_l)]


def discriminative_loss(logprobs_all_labels: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """L_disc = −E_{x_j} [ Pr(x_j|x_<j; Q_y) / Σ_l' Pr(x_j|x_<j; Q_l') ].

    The ratio is the softmax over the label axis of the token log-probs, which is exactly the
    formula but computed stably in log space (no underflow of the raw probabilities).

    Args:
        logprobs_all_labels: ``[B, L, T]`` log Pr(x_j | x_<j; Q_l) of each real token under each label's prompt.
        labels: ``[B]`` the true label of each example.
        mask: ``[B, T]`` 1 on valid tokens, 0 on padding.
    """
    if logprobs_all_labels.dim() != 3 or labels.shape != logprobs_all_labels.shape[:1]:
        raise SynthtuneError(
            f"discriminative_loss needs log-probs [B, L, T] and labels [B], got "
            f"{tuple(logprobs_all_labels.shape)} and {tuple(labels.shape)}; stack per-label log-probs on dim 1"
        )
    n_labels = logprobs_all_labels.shape[1]
    if bool(((labels < 0) | (labels >= n_labels)).any()):
        raise SynthtuneError(f"discriminative_loss: labels must be in [0, {n_labels}); check the label column")
    b, _, t = logprobs_all_labels.shape
    valid = _valid_mask(mask, torch.Size((b, t)), "discriminative_loss")
    # DawGen L_disc: Pr(x_j; Q_y) / Σ_l' Pr(x_j; Q_l') = softmax over labels of log Pr
    posterior = torch.softmax(logprobs_all_labels, dim=1)
    own = posterior.gather(1, labels.long().view(b, 1, 1).expand(b, 1, t)).squeeze(1)
    return -own.masked_fill(~valid, 0.0).sum() / valid.sum()


def distribution_hinge_loss(
    z: Tensor,
    labels: Tensor,
    w_proj: Tensor | Callable[[Tensor], Tensor] | None = None,
    margin: float = 1.0,
) -> Tensor:
    """L_dist = E max(0, margin − D(Z_i, Z_j⁺) + D(Z_i, Z_j⁻)).

    The expectation runs over every triplet (anchor i, positive j⁺ ≠ i with the same label,
    negative j⁻ with a different label) of the batch. D is cosine *similarity*: read as a distance,
    the hinge would reward same-label pairs for being far apart and push them apart, the opposite
    of the intent; as a similarity it asks same-label pairs to be at least ``margin`` more similar
    than different-label pairs. A batch without any such triplet gives 0 (still in the graph).

    Args:
        z: ``[B, d]`` pooled representations Z_i.
        labels: ``[B]`` labels.
        w_proj: optional projection applied first: a ``[d, k]`` matrix or a callable (e.g. ``nn.Linear``).
        margin: hinge margin (1.0 in the paper).
    """
    if z.dim() != 2 or labels.shape != z.shape[:1]:
        raise SynthtuneError(
            f"distribution_hinge_loss needs Z [B, d] and labels [B], got {tuple(z.shape)} and "
            f"{tuple(labels.shape)}; pool the representations to one vector per example"
        )
    if w_proj is not None:
        z = z @ w_proj if isinstance(w_proj, Tensor) else w_proj(z)
    zn = F.normalize(z, dim=-1)
    sim = zn @ zn.T  # D(Z_i, Z_j), cosine similarity
    same = labels.view(-1, 1) == labels.view(1, -1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos = same & ~eye  # [i, j⁺]
    neg = ~same  # [i, j⁻]
    triplets = pos.unsqueeze(2) & neg.unsqueeze(1)  # [i, j⁺, j⁻]
    if not bool(triplets.any()):
        return z.sum() * 0.0
    # DawGen L_dist hinge: max(0, margin − D(Z_i, Z_j⁺) + D(Z_i, Z_j⁻))
    hinge = torch.relu(margin - sim.unsqueeze(2) + sim.unsqueeze(1))
    return hinge[triplets].mean()


def dawgen_objective(l_wgen: Tensor, l_dist: Tensor, lam: float) -> Tensor:
    """L_DawGen = E_l[L_wGen] + λ · L_dist.

    Args:
        l_wgen: weighted generation loss (averaged per label, then over labels).
        l_dist: distribution hinge loss.
        lam: weight λ ≥ 0 of the hinge loss.
    """
    value = float(lam)
    if not math.isfinite(value) or value < 0:
        raise SynthtuneError(f"DawGen lambda must be a finite number >= 0, got {lam!r}; pass e.g. lam=1.0")
    # DawGen objective: E_l[L_wGen] + λ L_dist
    return l_wgen + value * l_dist
