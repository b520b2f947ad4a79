"""64-bit hashes of texts and of their word n-grams, computed a chunk of texts at a time.

The streaming curation keeps hashes, never texts: a row is identified for exact dedup by the
64-bit xxh3 hash of its :func:`~synthtune.curation.normalize.normalize_for_dedup` form, and the
decontamination reference is the sorted array of the hashes of its word n-grams (the words of
:func:`~synthtune.curation.normalize.ngram_tokens`, App. A.3). A candidate's n-grams are hashed
the same way, all windows of a chunk at once with NumPy, and looked up by binary search.

Collisions: two different texts share a 64-bit hash with probability about ``m^2 / 2^65`` for
``m`` distinct texts (3e-6 at 10M rows); an n-gram falsely matches the reference with
probability about ``windows * reference_ngrams / 2^64`` (below 1e-6 at 10M rows against 10^5
reference n-grams). Both are far below one row at the scales this is made for.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import xxhash

from synthtune.curation.normalize import ngram_tokens, normalize_for_dedup

# The multiplier of the polynomial window hash (an odd 64-bit constant).
_BASE = np.uint64(0x9E3779B97F4A7C15)
_TOKEN_CACHE: dict[bytes, int] = {}
_TOKEN_CACHE_LIMIT = 2_000_000


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    """The uint64 xxh3 hash of every text after case and whitespace normalisation (the exact-dedup key).

    Args:
        texts: the texts.
    """
    digest = xxhash.xxh3_64_intdigest
    return np.fromiter((digest(normalize_for_dedup(t).encode("utf-8")) for t in texts), dtype=np.uint64,
                       count=len(texts))


def mix(hashes: np.ndarray, seed: int) -> np.ndarray:
    """A seeded, uniformly spread uint64 function of ``hashes`` (splitmix64's finaliser).

    Args:
        hashes: uint64 values.
        seed: which function of the family.
    """
    with np.errstate(over="ignore"):
        # splitmix64: z += seed * golden ratio; z = (z ^ z >> 30) * c1; z = (z ^ z >> 27) * c2; z ^= z >> 31
        z = hashes.astype(np.uint64) + np.uint64((int(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


# ASCII fast path of ngram_tokens: apostrophes deleted, every other non-letter byte a space.
_ASCII_DELETE = b"'`"
_ASCII_TABLE = bytes(c if chr(c).isalpha() else 32 for c in range(128)) + b" " * 128


def _token_bytes(text: str) -> list[bytes]:
    """The UTF-8 bytes of ``ngram_tokens(text)``, by ``bytes.translate`` when the text is ASCII."""
    if text.isascii():
        return text.lower().encode("ascii").translate(_ASCII_TABLE, _ASCII_DELETE).split()
    return [token.encode("utf-8") for token in ngram_tokens(text)]


def _token_ids(tokens: list[bytes]) -> list[int]:
    cache = _TOKEN_CACHE
    if len(cache) > _TOKEN_CACHE_LIMIT:
        cache.clear()
    ids = []
    for token in tokens:
        value = cache.get(token)
        if value is None:
            value = cache[token] = xxhash.xxh3_64_intdigest(token)
        ids.append(value)
    return ids


def ngram_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The hash of every word ``n``-gram window of every text, and which text each window is in.

    Args:
        texts: the texts (normalised here with :func:`ngram_tokens`).
        n: the n-gram length in words.

    Returns:
        ``(hashes, owner)``: uint64 window hashes and the int64 index of each window's text.
    """
    ids: list[int] = []
    lengths = np.empty(len(texts), dtype=np.int64)
    for index, text in enumerate(texts):
        tokens = _token_bytes(text)
        lengths[index] = len(tokens)
        ids.extend(_token_ids(tokens))
    if not ids:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    tokens = np.asarray(ids, dtype=np.uint64)
    total = len(tokens)
    if total < n:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    owner = np.repeat(np.arange(len(texts), dtype=np.int64), lengths)
    starts = total - n + 1
    with np.errstate(over="ignore"):
        # polynomial hash of a window: h = sum_j ids[i + j] * BASE^(n - 1 - j)  (mod 2^64)
        h = tokens[:starts].copy()
        for j in range(1, n):
            h = h * _BASE + tokens[j:starts + j]
    valid = owner[:starts] == owner[n - 1:]  # the window lies inside one text
    return h[valid], owner[:starts][valid]


def reference_ngram_hashes(references: Iterable[str], n: int, chunk: int = 10_000) -> np.ndarray:
    """The sorted distinct hashes of the word ``n``-grams of ``references`` (the hashed reference set).

    Args:
        references: reference (test-set) texts.
        n: the n-gram length in words.
        chunk: texts hashed at a time.
    """
    parts, batch = [], []
    for text in references:
        batch.append(text)
        if len(batch) == chunk:
            parts.append(np.unique(ngram_hashes(batch, n)[0]))
            batch = []
    if batch:
        parts.append(ngram_hashes(batch, n)[0])
    return np.unique(np.concatenate(parts)) if parts else np.empty(0, np.uint64)


def contaminated(texts: Sequence[str], reference: np.ndarray, n: int) -> np.ndarray:
    """Whether each text shares a word ``n``-gram with the hashed ``reference`` set.

    Args:
        texts: candidate texts.
        reference: sorted uint64 n-gram hashes from :func:`reference_ngram_hashes`.
        n: the n-gram length in words.
    """
    flags = np.zeros(len(texts), dtype=bool)
    if len(reference) == 0 or len(texts) == 0:
        return flags
    hashes, owner = ngram_hashes(texts, n)
    position = np.minimum(np.searchsorted(reference, hashes), len(reference) - 1)
    flags[owner[reference[position] == hashes]] = True
    return flags
