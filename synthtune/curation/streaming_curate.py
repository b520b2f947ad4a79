"""Curation in bounded memory over sharded input: the steps of :func:`~synthtune.curation.cluster_select.curate`,
unit by unit (SoftSRV App. A.2, A.3).

Memory holds hashes and labels, never the texts of the whole input:

1. **scan** (per unit, in parallel): parse the rows, hash each normalised text (exact-dedup key),
   flag rows that share a hashed 13-gram with the reference, optionally compute MinHash LSH keys,
   and keep the unit's candidates for the fitting sample: the texts with the smallest seeded
   hash-derived keys among its clean distinct texts;
2. **merge**: first occurrences by ``np.unique`` over the hashes (dedup), then the pool (not
   contaminated, not a near duplicate); the fitting sample is the ``sample_size`` pool texts with
   the smallest keys, in input order — a uniform sample of the distinct texts, reproducible by
   seed and the same whatever the sharding; when the pool fits in the sample it *is* the pool;
3. **fit** on the sample: TF-IDF vocabulary and IDF, truncated SVD, mini-batch k-means, with the
   in-memory path's parameters;
4. **assign** (per unit, in parallel): TF-IDF → SVD → nearest centre for every pool row;
5. **select**: :func:`~synthtune.curation.streaming_select.round_robin_streaming`, the in-memory
   round-robin draw with bounded reservoirs;
6. **write**: the chosen rows, read back by their byte offsets, to a temporary file renamed onto
   the output at the end, then the report.

When the pool is no larger than ``sample_size`` the result equals the in-memory path's (the same
fitted models, the same labels up to float rounding, the same draw). Above it, the models are
fitted on the sample instead of every row, which is the one difference.

Per row the run keeps about 25 bytes (hash, offset, flags, label), 100 more with near-dup keys.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from synthtune.curation.cluster_select import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CLUSTERS,
    DEFAULT_NUM_SAMPLES,
    DEFAULT_SVD_COMPONENTS,
)
from synthtune.curation.decontaminate import DEFAULT_NGRAM
from synthtune.curation.hashed_ngrams import contaminated, mix, reference_ngram_hashes, text_hashes
from synthtune.curation.streaming_input import DEFAULT_UNIT_BYTES, Unit, iter_rows_at, plan_units, read_unit
from synthtune.curation.streaming_select import round_robin_streaming
from synthtune.errors import SynthtuneError

log = logging.getLogger(__name__)

DEFAULT_SAMPLE_SIZE = 100_000
ASSIGN_CHUNK = 20_000


@dataclass
class CurateSettings:
    """What a streaming curation does; the defaults are the paper's (and the in-memory path's).

    Args:
        field: text field of the rows.
        num_samples: rows to keep.
        svd_components: truncated-SVD rank.
        n_clusters: k-means clusters.
        seed: seed of the sample, SVD, k-means and the round-robin draws.
        ngram: decontamination n-gram length.
        batch_size: k-means mini-batch size.
        sample_size: pool texts the vectoriser, SVD and k-means are fitted on.
        near_dedup: also drop near duplicates (MinHash LSH).
        near_dedup_threshold: Jaccard threshold of near-dup mode.
        strict: fail on broken JSON lines instead of skipping them.
        reference_path: reference (test) file for decontamination, or None.
        reference_field: its text field.
        select: False to only decontaminate (keep every clean row, no dedup or clustering).
    """

    field: str = "text"
    num_samples: int = DEFAULT_NUM_SAMPLES
    svd_components: int = DEFAULT_SVD_COMPONENTS
    n_clusters: int = DEFAULT_CLUSTERS
    seed: int = 0
    ngram: int = DEFAULT_NGRAM
    batch_size: int = DEFAULT_BATCH_SIZE
    sample_size: int = DEFAULT_SAMPLE_SIZE
    near_dedup: bool = False
    near_dedup_threshold: float = 0.8
    strict: bool = False
    reference_path: Optional[str] = None
    reference_field: Optional[str] = None
    select: bool = True

    def check(self) -> None:
        """Refuse settings that cannot work, in one line each."""
        if int(self.num_samples) < 1:
            raise SynthtuneError(f"num_samples must be at least 1, got {self.num_samples}; pass e.g. --num_samples 50000")
        if int(self.n_clusters) < 1 or int(self.svd_components) < 1:
            raise SynthtuneError("--clusters and --svd_components must be at least 1")
        if int(self.sample_size) < int(self.n_clusters):
            raise SynthtuneError(
                f"--sample_size {self.sample_size} is below --clusters {self.n_clusters}; k-means needs at least "
                "one sample row per cluster"
            )
        if not isinstance(self.ngram, int) or self.ngram < 1:
            raise SynthtuneError(f"n-gram size must be a positive integer, got {self.ngram!r}; pass e.g. --ngram 13")


@dataclass
class UnitScan:
    """What the scan of one unit keeps.

    Args:
        rows: rows parsed.
        hashes: uint64 dedup hash per row.
        contaminated: per row, whether it shares a hashed n-gram with the reference.
        offsets: per row, where to read it back.
        broken: broken lines skipped.
        bands: near-dup LSH keys per row (zeros for rows repeated within the unit), or None.
        sample_keys: seeded keys of the unit's sample candidates.
        sample_rows: their row indices within the unit.
        sample_texts: their texts.
    """

    rows: int
    hashes: np.ndarray
    contaminated: np.ndarray
    offsets: np.ndarray
    broken: int
    bands: Optional[np.ndarray]
    sample_keys: np.ndarray
    sample_rows: np.ndarray
    sample_texts: list[str]


def load_reference(settings: CurateSettings) -> Optional[np.ndarray]:
    """The hashed n-gram set of the reference file, or None without one."""
    if settings.reference_path is None:
        return None
    from synthtune.curation.reference import reference_texts

    texts = reference_texts(settings.reference_path, settings.reference_field or settings.field, settings.strict)
    return reference_ngram_hashes(texts, settings.ngram)


def _candidates(settings: CurateSettings) -> int:
    """Sample candidates a unit keeps: twice the sample in near-dup mode, which removes some later."""
    return int(settings.sample_size) * (2 if settings.near_dedup else 1)


def scan_unit(unit: Unit, settings: CurateSettings, reference: Optional[np.ndarray]) -> UnitScan:
    """Parse a unit and compute its hashes, contamination flags and sample candidates.

    Args:
        unit: the unit.
        settings: the run's settings.
        reference: hashed reference n-grams (:func:`load_reference`), or None.
    """
    data = read_unit(unit, settings.field, settings.strict)
    hashes = text_hashes(data.texts)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    # contamination is a function of the normalised text: check each distinct one once
    flags_first = (contaminated([data.texts[i] for i in first], reference, settings.ngram)
                   if reference is not None else np.zeros(len(first), dtype=bool))
    flags = flags_first[inverse.reshape(-1)] if len(first) else np.zeros(0, dtype=bool)
    bands = None
    if settings.near_dedup:
        from synthtune.curation.near_dedup import NearDuplicateBands

        lsh = NearDuplicateBands(settings.near_dedup_threshold)
        bands = np.zeros((len(hashes), lsh.bands), dtype=np.uint64)
        bands[first] = lsh.keys([data.texts[i] for i in first])
    clean_first = first[~flags_first]
    keys = mix(hashes[clean_first], settings.seed)
    keep = np.argsort(keys, kind="stable")[:_candidates(settings)]
    rows = clean_first[keep]
    return UnitScan(
        rows=len(hashes), hashes=hashes, contaminated=flags, offsets=data.offsets, broken=data.broken, bands=bands,
        sample_keys=keys[keep], sample_rows=rows, sample_texts=[data.texts[i] for i in rows],
    )


@dataclass
class Merged:
    """The whole input's dedup and pool, from the unit scans.

    Args:
        unit_rows: rows per unit.
        pool: per row, whether it is in the pool (first occurrence, clean, not a near duplicate).
        counts: the report's counts so far.
        sample_texts: the fitting sample, in input order.
    """

    unit_rows: list[int]
    pool: np.ndarray
    counts: dict[str, Any]
    sample_texts: list[str] = field(default_factory=list)


class SampleKeeper:
    """The smallest-key sample candidates seen so far, merged unit by unit (bounded at ``limit``).

    Args:
        limit: candidates to keep.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.keys = np.empty(0, dtype=np.uint64)
        self.rows = np.empty(0, dtype=np.int64)
        self.texts: list[str] = []

    def add(self, scan: UnitScan, base: int) -> None:
        """Merge a unit's candidates; ``base`` is the global index of its first row."""
        keys = np.concatenate([self.keys, scan.sample_keys])
        rows = np.concatenate([self.rows, scan.sample_rows.astype(np.int64) + base])
        texts = self.texts + scan.sample_texts
        # one entry per key (a text repeated across units), the earliest row first
        order = np.lexsort((rows, keys))
        keys, rows = keys[order], rows[order]
        distinct = np.r_[True, keys[1:] != keys[:-1]]
        order, keys, rows = order[distinct][: self.limit], keys[distinct][: self.limit], rows[distinct][: self.limit]
        self.keys, self.rows, self.texts = keys, rows, [texts[i] for i in order]


def merge_scans(scans: Sequence[UnitScan], keeper: SampleKeeper, settings: CurateSettings) -> Merged:
    """Dedup over all units, the pool and the fitting sample.

    Args:
        scans: the unit scans in unit order (their sample candidates already in ``keeper``).
        keeper: the merged sample candidates.
        settings: the run's settings.
    """
    unit_rows = [scan.rows for scan in scans]
    hashes = np.concatenate([scan.hashes for scan in scans]) if scans else np.empty(0, np.uint64)
    total = len(hashes)
    _, first = np.unique(hashes, return_index=True)
    del hashes
    distinct = np.zeros(total, dtype=bool)
    distinct[first] = True
    bad = np.concatenate([scan.contaminated for scan in scans]) if scans else np.zeros(0, bool)
    counts: dict[str, Any] = {
        "input": total + sum(scan.broken for scan in scans),
        "broken_lines_skipped": sum(scan.broken for scan in scans),
        "rows_read": total,
        "after_dedup": int(distinct.sum()),
        "duplicates_removed": total - int(distinct.sum()),
    }
    pool = distinct if settings.select else np.ones(total, dtype=bool)
    if settings.near_dedup and settings.select:
        bands = np.concatenate([scan.bands for scan in scans])
        from synthtune.curation.near_dedup import near_duplicate_mask

        ordered = np.sort(first)
        near = np.zeros(total, dtype=bool)
        near[ordered] = near_duplicate_mask(bands[ordered])
        counts["near_duplicates_removed"] = int(near.sum())
        pool = pool & ~near
        counts["after_near_dedup"] = int(pool.sum())
    before = int(pool.sum())
    dropped = int((pool & bad).sum())
    pool = pool & ~bad
    if settings.reference_path is not None:
        counts.update(ngram=settings.ngram, decontaminated_dropped=dropped,
                      contamination_rate=dropped / before if before else 0.0)
    else:
        counts.update(ngram=None, decontaminated_dropped=0, contamination_rate=None)
    counts["after_decontamination"] = int(pool.sum())
    in_pool = pool[keeper.rows] if len(keeper.rows) else np.zeros(0, bool)
    picked = np.flatnonzero(in_pool)[: int(settings.sample_size)]
    picked = picked[np.argsort(keeper.rows[picked], kind="stable")]
    return Merged(unit_rows, pool, counts, [keeper.texts[i] for i in picked])


class CurationModel:
    """TF-IDF → truncated SVD → mini-batch k-means, fitted as :func:`~synthtune.curation.cluster_select.curate`
    fits them, then applied to any chunk of texts.

    Args:
        texts: the fitting sample, in input order.
        svd_components: requested SVD rank (shrunk as the in-memory path shrinks it).
        n_clusters: k-means clusters.
        seed: seed of SVD and k-means.
        batch_size: k-means mini-batch.
    """

    def __init__(self, texts: Sequence[str], svd_components: int, n_clusters: int, seed: int, batch_size: int):
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.decomposition import TruncatedSVD
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        self.vectorizer = TfidfVectorizer(dtype=np.float32)
        try:
            tfidf = self.vectorizer.fit_transform(texts)
        except ValueError:
            raise SynthtuneError("the texts contain no words to vectorise; check the --field holds text") from None
        rows, vocab = tfidf.shape
        # truncated SVD needs a rank below both the vocabulary size and the row count
        self.components = max(min(svd_components, vocab - 1, rows - 1), 0)
        self.svd = None
        if self.components >= 1:
            self.svd = TruncatedSVD(n_components=self.components, algorithm="randomized", n_iter=5, random_state=seed)
            features = normalize(self.svd.fit_transform(tfidf).astype(np.float32, copy=False)).astype(np.float32)
        else:
            features = normalize(tfidf.toarray()).astype(np.float32)
        self.kmeans = MiniBatchKMeans(n_clusters=n_clusters, batch_size=batch_size, n_init=1, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message=".*init_size.*", category=RuntimeWarning)
            self.kmeans.fit(np.asarray(features, dtype=np.float64))

    def labels(self, texts: Sequence[str]) -> np.ndarray:
        """The k-means cluster of each text (int32)."""
        from sklearn.preprocessing import normalize

        out = np.empty(len(texts), dtype=np.int32)
        for start in range(0, len(texts), ASSIGN_CHUNK):
            tfidf = self.vectorizer.transform(texts[start:start + ASSIGN_CHUNK])
            if self.svd is not None:
                features = normalize(self.svd.transform(tfidf).astype(np.float32, copy=False)).astype(np.float32)
            else:
                features = normalize(tfidf.toarray()).astype(np.float32)
            out[start:start + ASSIGN_CHUNK] = self.kmeans.predict(np.asarray(features, dtype=np.float64))
        return out


@dataclass
class Plan:
    """What the assign and write steps need after the merge.

    Args:
        merged: dedup, pool and counts.
        model: the fitted model, or None when every pool row is kept.
        clusters: k actually used (0 without clustering).
        notes: warnings for the report.
    """

    merged: Merged
    model: Optional[CurationModel]
    clusters: int
    notes: list[str]


def make_plan(merged: Merged, settings: CurateSettings, source: str) -> Plan:
    """Fit the model on the sample, or decide that every pool row is kept.

    Args:
        merged: the merge result.
        settings: the run's settings.
        source: the input, for messages.
    """
    notes: list[str] = []

    def warn(message: str) -> None:
        notes.append(message)
        log.warning(message)

    size = merged.counts["after_decontamination"]
    if merged.counts["rows_read"] == 0:
        raise SynthtuneError(f"{source}: there are no rows to curate; check the input file")
    if size == 0:
        raise SynthtuneError(f"{source}: every row was dropped as contaminated; check the reference set and --ngram")
    if not settings.select:
        return Plan(merged, None, 0, notes)
    if settings.num_samples >= size:
        if settings.num_samples > size:
            warn(f"asked for {settings.num_samples} samples but only {size} remain after dedup/decontamination; "
                 "keeping all")
        return Plan(merged, None, 0, notes)
    k = int(settings.n_clusters)
    if size < k:
        warn(f"only {size} rows for {k} clusters; using {size} clusters")
        k = size
    model = CurationModel(merged.sample_texts, settings.svd_components, k, settings.seed, settings.batch_size)
    if model.components < settings.svd_components:
        warn(f"only {len(merged.sample_texts)} rows and {len(model.vectorizer.vocabulary_)} distinct words: "
             f"reducing SVD components from {settings.svd_components} to {model.components}")
        notes.append(f"SVD components reduced from {settings.svd_components} to {model.components}")
    return Plan(merged, model, k, notes)


def unit_bases(unit_rows: Sequence[int]) -> np.ndarray:
    """Global index of each unit's first row."""
    return np.concatenate([[0], np.cumsum(unit_rows)[:-1]]).astype(np.int64) if unit_rows else np.zeros(0, np.int64)


def assign_unit(unit: Unit, pool: np.ndarray, model: CurationModel, settings: CurateSettings) -> np.ndarray:
    """The cluster of every pool row of a unit.

    Args:
        unit: the unit.
        pool: the pool flags of the unit's rows.
        model: the fitted model.
        settings: the run's settings.
    """
    rows = np.flatnonzero(pool)
    if len(rows) == 0:
        return np.empty(0, dtype=np.int32)
    texts = read_unit(unit, settings.field, False).texts
    return model.labels([texts[i] for i in rows])


def choose(plan: Plan, label_chunks: Optional[Callable[[], Iterable[np.ndarray]]], settings: CurateSettings
           ) -> tuple[np.ndarray, dict[str, Any]]:
    """The chosen rows (global indices, sorted) and the selection's report entries.

    Args:
        plan: the plan.
        label_chunks: a function giving the pool rows' labels in order, in chunks (None without a model).
        settings: the run's settings.
    """
    pool_rows = np.flatnonzero(plan.merged.pool)
    if plan.model is None:
        chosen = pool_rows
        extra = {"svd_components": 0, "clusters": 0, "clusters_used": 0}
    else:
        picked = np.asarray(round_robin_streaming(label_chunks, settings.num_samples, settings.seed), dtype=np.int64)
        labels_picked = _labels_at(label_chunks, np.sort(picked))
        chosen = np.sort(pool_rows[picked])
        extra = {"svd_components": plan.model.components, "clusters": plan.clusters,
                 "clusters_used": int(len(np.unique(labels_picked)))}
    return chosen, extra


def _labels_at(label_chunks: Callable[[], Iterable[np.ndarray]], positions: np.ndarray) -> np.ndarray:
    """The labels at sorted ``positions`` of the chunked label sequence."""
    out, base = [], 0
    for chunk in label_chunks():
        lo, hi = np.searchsorted(positions, [base, base + len(chunk)])
        out.append(np.asarray(chunk)[positions[lo:hi] - base])
        base += len(chunk)
    return np.concatenate(out) if out else np.empty(0, np.int32)


def write_chosen(units: Sequence[Unit], offsets: Sequence[np.ndarray], unit_rows: Sequence[int], chosen: np.ndarray,
                 output: str) -> int:
    """Write the rows at global indices ``chosen`` (sorted) to ``output`` atomically, as ``atomic_write_jsonl`` does.

    Args:
        units: the units.
        offsets: per unit, each row's offset (from the scan).
        unit_rows: rows per unit.
        chosen: sorted global row indices.
        output: the JSONL output path.
    """
    import json

    from synthtune.paths import atomic_write

    bases = unit_bases(unit_rows)
    written = 0
    with atomic_write(output) as fh:
        for index, unit in enumerate(units):
            lo, hi = np.searchsorted(chosen, [bases[index], bases[index] + unit_rows[index]])
            if hi == lo:
                continue
            local = chosen[lo:hi] - bases[index]
            for row in iter_rows_at(unit, offsets[index][local]):
                fh.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
                written += 1
    return written


# ------------------------------------------------------------------------------------------ one machine
_WORKER: dict[str, Any] = {}


def _init_worker(settings: CurateSettings, reference: Optional[np.ndarray], model: Optional[CurationModel]) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # one BLAS/OpenMP thread per worker process: the processes are the parallelism
    _WORKER.update(settings=settings, reference=reference, model=model)


def _scan_task(unit: Unit) -> UnitScan:
    return scan_unit(unit, _WORKER["settings"], _WORKER["reference"])


def _assign_task(args: tuple[Unit, np.ndarray]) -> np.ndarray:
    return assign_unit(args[0], args[1], _WORKER["model"], _WORKER["settings"])


def _map(function: Callable, items: Sequence[Any], workers: int, init_args: tuple) -> Iterator[Any]:
    """``function`` over ``items`` in order: in this process for one worker, else in a spawned pool."""
    if workers <= 1 or len(items) <= 1:
        _WORKER.update(settings=init_args[0], reference=init_args[1], model=init_args[2])
        yield from map(function, items)
        return
    context = multiprocessing.get_context("spawn")  # a fork after OpenMP use can hang the children
    with context.Pool(min(workers, len(items)), initializer=_init_worker, initargs=init_args) as pool:
        yield from pool.imap(function, items)


def resolve_workers(workers: Optional[int]) -> int:
    """Worker processes: ``workers``, or every CPU of this machine when None or 0."""
    if workers is None or workers == 0:
        return os.cpu_count() or 1
    if workers < 0:
        raise SynthtuneError(f"--workers must be at least 1 (or 0 for every CPU), got {workers}")
    return int(workers)


def streaming_curate(input: str, output: str, settings: CurateSettings, workers: Optional[int] = None,
                     progress: Callable[[str], None] = log.info, unit_bytes: int = DEFAULT_UNIT_BYTES
                     ) -> dict[str, Any]:
    """Curate ``input`` (a file, folder, glob or comma-separated list) into ``output`` on this machine.

    Args:
        input: the input spec (see :func:`~synthtune.curation.streaming_input.input_files`).
        output: the JSONL output; written atomically at the end, so a killed run leaves none.
        settings: what to do.
        workers: processes for the scan and assign passes (None or 0: every CPU).
        progress: called with a line at each stage.
        unit_bytes: target size of a JSONL unit of work.

    Returns:
        The report entries of :func:`~synthtune.curation.cluster_select.curate`, plus ``executor``,
        ``workers``, ``units`` and ``sample_size``.
    """
    settings.check()
    workers = resolve_workers(workers)
    start = time.perf_counter()
    units = plan_units(input, unit_bytes)
    reference = load_reference(settings)
    keeper = SampleKeeper(_candidates(settings))
    scans: list[UnitScan] = []
    base = 0
    for scan in _map(_scan_task, units, workers, (settings, reference, None)):
        keeper.add(scan, base)
        base += scan.rows
        scan.sample_keys, scan.sample_rows, scan.sample_texts = np.empty(0, np.uint64), np.empty(0, np.int64), []
        scans.append(scan)
    progress(f"scanned {len(units)} unit(s), {base} rows in {time.perf_counter() - start:.1f} s")
    merged = merge_scans(scans, keeper, settings)
    del keeper
    offsets = [scan.offsets for scan in scans]
    for scan in scans:  # the merge holds what it needs; keep only the offsets
        scan.hashes = scan.contaminated = scan.bands = None
    plan = make_plan(merged, settings, str(input))
    labels: list[np.ndarray] = []
    if plan.model is not None:
        progress(f"fitted TF-IDF/SVD-{plan.model.components}/k-means-{plan.clusters} on "
                 f"{len(merged.sample_texts)} sampled rows at {time.perf_counter() - start:.1f} s")
        merged.sample_texts = []
        bases = unit_bases(merged.unit_rows)
        jobs = [(unit, merged.pool[bases[i]:bases[i] + merged.unit_rows[i]]) for i, unit in enumerate(units)]
        labels = list(_map(_assign_task, jobs, workers, (settings, None, plan.model)))
        progress(f"assigned {int(merged.pool.sum())} pool rows at {time.perf_counter() - start:.1f} s")
    chosen, extra = choose(plan, lambda: iter(labels), settings)
    written = write_chosen(units, offsets, merged.unit_rows, chosen, output)
    progress(f"wrote {written} rows at {time.perf_counter() - start:.1f} s")
    return finish_counts(merged, extra, written, plan, settings, "streaming", workers, len(units))


def finish_counts(merged: Merged, extra: dict[str, Any], written: int, plan: Plan, settings: CurateSettings,
                  executor: str, workers: int, units: int) -> dict[str, Any]:
    """The report entries of a run, in :func:`~synthtune.curation.cluster_select.curate`'s format plus the executor's."""
    counts = dict(merged.counts)
    counts.update(extra)
    counts.update(selected=written, output=written, num_samples=int(settings.num_samples), seed=settings.seed,
                  warnings=plan.notes, executor=executor, workers=workers, units=units,
                  sample_size=int(settings.sample_size), near_dedup=settings.near_dedup)
    return counts
