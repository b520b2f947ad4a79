"""Opt-in near-duplicate removal by MinHash LSH (``datasketch``), beside exact dedup.

Generated text repeats with small edits that exact dedup cannot see. Each text's word 5-gram
shingles (of :func:`~synthtune.curation.normalize.ngram_tokens`) get a ``datasketch.MinHash``
signature; ``datasketch.MinHashLSH`` picks the band layout (``b`` bands of ``r`` rows) that best
separates Jaccard similarities above and below ``threshold``; each band of a signature is
hashed to one uint64 bucket key. A row is a near duplicate when, in some band, an earlier row
falls in the same bucket (the first row of every bucket is kept), so pairs with Jaccard
similarity ``s`` are caught with probability ``1 - (1 - s^r)^b``.

Only ``b`` uint64 keys per row are kept (72 bytes at the defaults), not the signatures.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import xxhash

from synthtune.curation.normalize import ngram_tokens
from synthtune.errors import SynthtuneError

DEFAULT_THRESHOLD = 0.8
DEFAULT_NUM_PERM = 128
SHINGLE_WORDS = 5


class NearDuplicateBands:
    """LSH bucket keys of texts' MinHash signatures.

    Args:
        threshold: Jaccard similarity of word 5-gram sets above which two texts count as near duplicates.
        num_perm: MinHash permutations.
        seed: seed of the MinHash permutations.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, num_perm: int = DEFAULT_NUM_PERM, seed: int = 1):
        try:
            from datasketch import MinHash, MinHashLSH
        except ImportError:
            raise SynthtuneError(
                "near-duplicate mode needs datasketch; pip install 'synthtune[curation]' or drop --near_dedup"
            ) from None
        if not 0.0 < threshold < 1.0:
            raise SynthtuneError(f"--near_dedup_threshold must be between 0 and 1, got {threshold}")
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.bands, self.rows = lsh.b, lsh.r
        self.num_perm, self.seed = num_perm, seed
        self._minhash = MinHash
        prototype = MinHash(num_perm=num_perm, seed=seed)
        self._permutations, self._scheme = prototype.permutations, getattr(prototype, "scheme", None)
        self._extra = {"scheme": self._scheme} if self._scheme else {}

    def keys(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), bands)`` uint64 bucket keys.

        Args:
            texts: the texts.
        """
        out = np.empty((len(texts), self.bands), dtype=np.uint64)
        width = self.bands * self.rows
        for index, text in enumerate(texts):
            words = ngram_tokens(text)
            shingles = [" ".join(words[i:i + SHINGLE_WORDS]).encode("utf-8")
                        for i in range(max(1, len(words) - SHINGLE_WORDS + 1))]
            signature = self._minhash(num_perm=self.num_perm, seed=self.seed, permutations=self._permutations,
                                     **self._extra)
            signature.update_batch(shingles)
            values = np.ascontiguousarray(signature.hashvalues[:width].astype(np.uint64)).reshape(self.bands, -1)
            out[index] = [xxhash.xxh3_64_intdigest(band.tobytes()) for band in values]
        return out


def near_duplicate_mask(keys: np.ndarray) -> np.ndarray:
    """Which rows share an LSH bucket with an earlier row in some band.

    Args:
        keys: ``(rows, bands)`` bucket keys, rows in input order.
    """
    mask = np.zeros(len(keys), dtype=bool)
    for band in range(keys.shape[1] if keys.ndim == 2 else 0):
        _, first = np.unique(keys[:, band], return_index=True)
        later = np.ones(len(keys), dtype=bool)
        later[first] = False
        mask |= later
    return mask
