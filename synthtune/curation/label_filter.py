"""Label-consistency filtering of labelled synthetic rows (issue 27, item 2): score how well each row's text
fits the label it was generated for, keep the rows the score agrees with, per label, and measure the result
with an independent judge.

Scorers (each returns one number per row; higher = more consistent with the row's own label):

* the generator itself (:func:`generator_scores`): DawGen's per-label prompts give
  ``log p(x | Q_y) − log Σ_l p(x | Q_l)``, the log-posterior of the row's label under a uniform prior over the
  label prompts; its per-token form is what L_disc trains. ``log p(x | Q_l)`` is the sum of the target tokens'
  log-probs, EOS included, exactly as in training (the data module's own encoding, ``all_label_logprobs``);
* a classifier trained on the real shots (:func:`classifier_scores`): logistic regression on sentence
  embeddings (MiniLM by default), score ``log p(y | x)``.

:func:`keep_per_label` applies a keep rule within each label, so filtering never changes the label balance
more than the rule says. :class:`Judge` is a supervised TF-IDF (word 1-2 grams) + logistic-regression classifier
trained on the task's full train split, features the scorers do not use; it only reports the on-label rate of
a row set (how often it agrees with the rows' labels) and its own accuracy on the evaluation split, for scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from synthtune.errors import SynthtuneError

#: What joins the two texts of a sentence-pair row for the classifier and the judge.
PAIR_JOINER = "\n"


# ----------------------------------------------------------------------------------------------- keep rule
def check_keep_rule(keep_fraction: Optional[float], threshold: Optional[float]) -> None:
    """Exactly one of ``keep_fraction`` (in (0, 1]) and ``threshold`` (finite), or one line saying what to pass."""
    if (keep_fraction is None) == (threshold is None):
        given = "both" if keep_fraction is not None else "neither"
        raise SynthtuneError(f"got {given} of keep_fraction and threshold; pass exactly one "
                             "(e.g. --keep_fraction 0.5, or --keep_fraction null --threshold -0.1)")
    if keep_fraction is not None and not 0 < float(keep_fraction) <= 1:
        raise SynthtuneError(f"keep_fraction must be in (0, 1], got {keep_fraction}; pass e.g. --keep_fraction 0.5")
    if threshold is not None and not math.isfinite(float(threshold)):
        raise SynthtuneError(f"threshold must be a finite number, got {threshold}; pass e.g. --threshold -0.1")


def kept_count(n: int, keep_fraction: float) -> int:
    """How many of a label's ``n`` rows a fraction keeps: ``floor(keep_fraction · n + 1/2)`` (half rounds up:
    7 rows at 0.5 keep 4), never more than ``n``."""
    return min(n, int(math.floor(keep_fraction * n + 0.5)))


def keep_per_label(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                   keep_fraction: Optional[float] = None, threshold: Optional[float] = None,
                   rank_by: Sequence[float] | np.ndarray | None = None) -> list[int]:
    """Indices of the rows to keep, ascending (the input order).

    Within each label: with ``keep_fraction``, its :func:`kept_count` best-scoring rows (equal scores: the
    earlier row first; a NaN score ranks last); with ``threshold``, every row scoring ``>= threshold``.

    Args:
        scores: one score per row (higher = more consistent with the row's label).
        labels: one label per row.
        keep_fraction: the share of each label's rows to keep, in (0, 1].
        threshold: the lowest score kept (instead of a fraction).
        rank_by: what ranks the rows for ``keep_fraction`` when it differs from ``scores`` (a monotone
            function of them that does not saturate, e.g. :func:`label_margin`).
    """
    check_keep_rule(keep_fraction, threshold)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise SynthtuneError(f"keep_per_label: {scores.shape} scores for {labels.shape} labels; pass one of each per row")
    if threshold is not None:
        return [int(i) for i in np.flatnonzero(scores >= float(threshold))]
    ranking = scores if rank_by is None else np.asarray(rank_by, dtype=np.float64)
    ranked = np.where(np.isnan(ranking), -np.inf, ranking)
    kept: list[int] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        order = rows[np.lexsort((rows, -ranked[rows]))]  # best score first; ties: the earlier row
        kept += order[:kept_count(len(rows), float(keep_fraction))].tolist()
    return sorted(int(i) for i in kept)


def label_margin(logprobs: np.ndarray, labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """``log p(x | Q_y) − logsumexp_{l ≠ y} log p(x | Q_l)`` per row (+inf with one label): the label's log-odds.

    :func:`label_ratio` is ``−log(1 + exp(−margin))``, a monotone function of it, but it saturates: a generator's
    own samples are often tens of nats likelier under their own label's prompt, and their ratios all round to 0.
    Rows are therefore ranked by the margin, which keeps them apart."""
    logprobs = np.asarray(logprobs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(labels))
    others = logprobs.copy()
    others[rows, labels] = -np.inf
    peak = others.max(axis=1)
    finite = np.isfinite(peak)
    rest = np.full(len(labels), -np.inf)
    rest[finite] = peak[finite] + np.log(np.exp(others[finite] - peak[finite, None]).sum(axis=1))
    return logprobs[rows, labels] - rest


def label_ratio(logprobs: np.ndarray, labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """``log p(x | Q_y) − logsumexp_l log p(x | Q_l)`` per row, from ``[N, L]`` per-label log-likelihoods,
    computed as ``−log(1 + exp(−margin))`` so that it stays below 0 where the direct difference rounds to 0."""
    # log p(y|x) = −log(1 + e^{−m}), m = log p(x|Q_y) − logsumexp_{l≠y} log p(x|Q_l)
    return -np.logaddexp(0.0, -label_margin(logprobs, labels))


# ------------------------------------------------------------------------------------------------ row texts
def row_text(row: dict[str, Any], fields: Sequence[str]) -> str:
    """A row's text for a classifier: its one text field, or a pair's two joined by :data:`PAIR_JOINER`."""
    return PAIR_JOINER.join(str(row[f]) for f in fields)


# ---------------------------------------------------------------------------------------- generator scorer
def generator_logprobs(module: Any, datamodule: Any, rows: Sequence[dict[str, Any]], batch_size: int = 16) -> np.ndarray:
    """``[N, L]`` log p(x | Q_l) of every row under every label's prompt of a trained DawGen module.

    x is encoded as the module was trained: ``datamodule.encode_target`` (``text``, or ``text_b`` of a pair
    task, truncated to ``max_length`` with EOS appended) after ``encode_context`` of ``text_a``; the
    log-probs of x's tokens (EOS included) under ``[Q_l ; c ; x]`` are summed.

    Args:
        module: a :class:`~synthtune.lightning_modules.dawgen.DawGenModule` with its trained prompts.
        datamodule: its :class:`~synthtune.datamodules.labeled.LabeledDataModule` (the tokenizer and lengths).
        rows: ``{"text"}`` or ``{"text_a", "text_b"}`` rows.
        batch_size: rows per forward pass (each runs once per label).
    """
    import torch

    from synthtune.components.dawgen.label_prompts import all_label_logprobs

    if batch_size < 1:
        raise SynthtuneError(f"batch_size must be at least 1, got {batch_size}; pass e.g. --batch_size 16")
    pair = bool(datamodule.is_pair)  # the run's task: text_b given text_a, else text
    items = [{"target": datamodule.encode_target(r["text_b"] if pair else r["text"]),
              "context": datamodule.encode_context(r["text_a"]) if pair else [], "label": 0, "index": i}
             for i, r in enumerate(rows)]
    order = sorted(range(len(items)), key=lambda i: len(items[i]["target"]) + len(items[i]["context"]))  # little padding
    device = next(module.label_prompts.parameters()).device
    out = np.zeros((len(items), module.label_prompts.num_labels), dtype=np.float64)
    module.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = {k: v.to(device) for k, v in datamodule.collate([items[i] for i in idx]).items()}
            token = all_label_logprobs(module.backbone, module.label_prompts.prompts, batch["target_ids"],
                                       batch["target_mask"], batch["context_ids"], batch["context_mask"])  # [B, L, T]
            summed = (token.double() * batch["target_mask"].unsqueeze(1)).sum(-1)  # log p(x | Q_l), EOS included
            out[idx] = summed.cpu().numpy()
    return out


def generator_scores(module: Any, datamodule: Any, rows: Sequence[dict[str, Any]], labels: Sequence[int],
                     batch_size: int = 16) -> np.ndarray:
    """Per row ``log p(x | Q_y) − log Σ_l p(x | Q_l)`` (see :func:`generator_logprobs`, :func:`label_ratio`)."""
    return label_ratio(generator_logprobs(module, datamodule, rows, batch_size), labels)


def compose_run(run: str | Path) -> dict[str, Any]:
    """The config a run folder's ``config.yaml`` composes to (as ``synthtune predict --config`` would run it)."""
    from synthtune.lightning_cli import Request, compose

    config = Path(run) / "config.yaml"
    if not config.is_file():
        raise SynthtuneError(f"{run} is not a run folder (no config.yaml); pass the --trainer.default_root_dir "
                             "of a DawGen `synthtune fit`")
    return compose(Request("predict", (config,)))


def run_datamodule(composed: dict[str, Any]) -> Any:
    """The data module of a composed run config, its backbone linked from the model as the CLI links it."""
    from lightning.pytorch.cli import instantiate_class

    from synthtune.components.backbone_spec import backbone_name

    data, model = composed.get("data") or {}, composed.get("model") or {}
    if not data.get("class_path"):
        raise SynthtuneError("the run's config has no data class; pass the folder of a DawGen fit")
    init = {**(data.get("init_args") or {})}
    backbone = (model.get("init_args") or {}).get("backbone")
    if backbone:
        init["backbone"] = backbone_name(backbone)  # a name, or a spec with one
    return instantiate_class((), {"class_path": data["class_path"], "init_args": init})


def restore_trained_state(module: Any, ckpt: str | Path) -> Any:
    """``module`` with the trainable state of a synthtune checkpoint (the frozen backbone is not in it); a
    checkpoint of another setup is refused in one line by the module's signature check."""
    import torch

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"], strict=False)
    return module


def load_dawgen_run(run: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """The trained :class:`DawGenModule` and its (not yet set up) data module of a DawGen run folder
    (``<run>/config.yaml`` as the CLI composes it, weights from ``<run>/checkpoints/last.ckpt``)."""
    from lightning.pytorch.cli import instantiate_class

    from synthtune.lightning_modules.dawgen import DawGenModule
    from synthtune.preflight import check_checkpoint_file

    run = Path(run)
    ckpt = run / "checkpoints" / "last.ckpt"
    if (run / "config.yaml").is_file() and not ckpt.is_file():
        raise SynthtuneError(f"{run} has no checkpoints/last.ckpt; finish (or resume) its `synthtune fit` first")
    composed = compose_run(run)
    model = composed.get("model") or {}
    if not str(model.get("class_path", "")).endswith("DawGenModule"):
        raise SynthtuneError(f"{run} is a {model.get('class_path')} run, not DawGen; the generator scorer needs "
                             "a DawGen run folder (or use --scorer classifier)")
    module = instantiate_class((), model)
    if not isinstance(module, DawGenModule):
        raise SynthtuneError(f"{run}: the model is {type(module).__name__}, not DawGenModule; pass a DawGen run")
    datamodule = run_datamodule(composed)
    check_checkpoint_file(ckpt)
    return restore_trained_state(module, ckpt).to(device).eval(), datamodule


# --------------------------------------------------------------------------------------- classifier scorer
def classifier_scores(real_texts: Sequence[str], real_labels: Sequence[int], texts: Sequence[str],
                      labels: Sequence[int], featurizer: Any = "minilm", seed: int = 0) -> np.ndarray:
    """``log p(y | x)`` of each row's own label under a logistic regression fitted on the real rows' embeddings.

    Args:
        real_texts, real_labels: the real (few-shot) rows it is trained on; every label must appear.
        texts, labels: the rows to score.
        featurizer: a :func:`~synthtune.components.encoders.featurize` name (default the bundled MiniLM) or encoder.
        seed: the logistic regression's random state.
    """
    from sklearn.linear_model import LogisticRegression

    from synthtune.components.encoders import featurize

    real_labels, labels = np.asarray(real_labels, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    classes = set(real_labels.tolist())
    missing = sorted(set(labels.tolist()) - classes)
    if len(classes) < 2 or missing:
        raise SynthtuneError(f"the real rows have labels {sorted(classes)} but the synthetic rows also use "
                             f"{missing}; the classifier needs real examples of every label (pass another --real)"
                             if missing else "the real rows have a single label; the classifier needs two or more")
    features = featurize([*real_texts, *texts], featurizer)
    real, synthetic = features[:len(real_texts)], features[len(real_texts):]
    clf = LogisticRegression(max_iter=2000, random_state=seed).fit(real, real_labels)
    logp = clf.predict_log_proba(synthetic)
    column = {int(c): j for j, c in enumerate(clf.classes_)}
    return logp[np.arange(len(labels)), [column[int(y)] for y in labels]].astype(np.float64)


# ---------------------------------------------------------------------------------------------- the judge
@dataclass
class Judge:
    """The independent judge: TF-IDF (word 1-2 grams) + logistic regression, trained on a task's full train split.

    Args:
        pipeline: the fitted scikit-learn pipeline.
        train_rows: how many rows it was trained on.
        test_accuracy: its accuracy on the evaluation split (None when not measured).
    """

    pipeline: Any
    train_rows: int
    test_accuracy: Optional[float] = None

    @classmethod
    def fit(cls, texts: Sequence[str], labels: Sequence[int], seed: int = 0) -> "Judge":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        if len(set(labels)) < 2:
            raise SynthtuneError("the judge's training rows have a single label; pass the task's full train split")
        pipeline = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
                                 LogisticRegression(max_iter=2000, C=10.0, random_state=seed))
        return cls(pipeline.fit(list(texts), np.asarray(labels, dtype=np.int64)), len(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return self.pipeline.predict(list(texts)) if len(texts) else np.zeros(0, dtype=np.int64)

    def on_label_rate(self, texts: Sequence[str], labels: Sequence[int]) -> Optional[float]:
        """The share of rows whose label the judge predicts (None for no rows)."""
        if not len(texts):
            return None
        return float(np.mean(self.predict(texts) == np.asarray(labels, dtype=np.int64)))

    def measure(self, texts: Sequence[str], labels: Sequence[int]) -> "Judge":
        """Record the judge's accuracy on a labelled evaluation split (returns itself)."""
        self.test_accuracy = self.on_label_rate(texts, labels)
        return self


def judge_for_task(train: Iterable[dict[str, Any]], evaluation: Iterable[dict[str, Any]] | None,
                   fields: Sequence[str], seed: int = 0) -> Judge:
    """A :class:`Judge` trained on ``train`` rows (validated ``read_labeled`` rows) and measured on ``evaluation``."""
    train = list(train)
    judge = Judge.fit([row_text(r, fields) for r in train], [r["label"] for r in train], seed=seed)
    if evaluation is not None:
        evaluation = list(evaluation)
        judge.measure([row_text(r, fields) for r in evaluation], [r["label"] for r in evaluation])
    return judge
