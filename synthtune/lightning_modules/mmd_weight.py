"""SynAlign MMD sample weights (Ren et al., Sec. 3.3) as a Lightning module.

Label-aware by default (``label_mode: per_label``), so resampling cannot shift the label balance:

fit:     per label c, ω_i = softmax_{i ∈ c}(g_Θ(e_i)) over the minibatch's synthetic rows of c; loss =
         Σ_c p_c · MMD²(synthetic rows of c, real rows of c), p_c = c's share of the synthetic rows,
         under an RBF kernel (median-heuristic or mixture bandwidths, fixed from the data at setup).
predict: global weights ω_i = (N_c / N) · exp(g_Θ(e_i)) / Σ_{j ∈ c} exp(g_Θ(e_j)) → one row per
         synthetic example (``weight``, ``score``) in ``samples.jsonl``; then ``num_resample`` rows
         drawn by ω within each label, each label getting its share of the *synthetic* rows, →
         ``resampled.jsonl``, and the MMD² before and after → ``resampled.jsonl.report.json``.

The synthetic proportions are kept (not the real ones) because the few-shot real set's proportions
are a choice of the selection policy (an even split per label), not an estimate of the population's,
and the generator was given the same per-label budget: the weights decide *which* rows of a label
to keep, never *how many* rows each label gets, so the classifier downstream sees the label balance
it was built with.

``label_mode: blind`` is the paper's label-blind variant: one softmax over the whole minibatch and
one MMD² to the whole real minibatch, global weights exp(g_Θ(e_i)) / Σ_j exp(g_Θ(e_j)), resampling
by ω over all rows (``stratify_label: true`` draws each label's share separately).

Checkpoints hold g_Θ and its optimizer only: the embeddings are recomputed (from the cache) by the
data, which hands them over in its ``DataInfo``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch

from synthtune.components.synalign.mmd import (
    BandwidthSpec,
    label_conditional_mmd2,
    mmd2_from_kernels,
    mmd2_minibatch,
    rbf_kernel,
    resolve_bandwidths,
)
from synthtune.components.synalign.sample_weights import SampleWeightNet, per_label_weights, resample
from synthtune.components.encoders import DEFAULT_FEATURIZER
from synthtune.contract import EmbeddingData
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.base import SynthtuneModule
from synthtune.paths import atomic_write_json, atomic_write_jsonl
from synthtune.registry import method

log = logging.getLogger(__name__)

RESAMPLED_FILE = "resampled.jsonl"


def effective_sample_size(weights: torch.Tensor) -> float:
    """Kish's effective sample size 1 / Σ ω_i² of normalised weights."""
    w = weights.double() / weights.double().sum()
    return float(1.0 / (w * w).sum())


def label_ids(synthetic_rows: tuple[dict[str, Any], ...], real_rows: tuple[dict[str, Any], ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' ``label`` values as integer ids (one id per distinct value), synthetic then real, or a
    one-line error when a row has no label or a synthetic label has no real rows to be aligned with."""
    for what, rows in (("synthetic", synthetic_rows), ("real", real_rows)):
        missing = next((i for i, row in enumerate(rows) if row.get("label") is None), None)
        if missing is not None:
            raise SynthtuneError(f"label_mode per_label needs a 'label' on every row, but {what} row {missing} has none; "
                                 f"add labels or set --model.init_args.label_mode blind")
    values = sorted({row["label"] for row in (*synthetic_rows, *real_rows)}, key=str)
    ids = {value: i for i, value in enumerate(values)}
    syn = torch.tensor([ids[row["label"]] for row in synthetic_rows])
    real = torch.tensor([ids[row["label"]] for row in real_rows])
    alone = [str(values[c]) for c in torch.unique(syn).tolist() if not bool((real == c).any())]
    if alone:
        raise SynthtuneError(f"synthetic label(s) {', '.join(alone)} have no real rows to be aligned with; add real rows "
                             f"of those labels (with the same label values) or set --model.init_args.label_mode blind")
    return syn, real


@method
class MMDWeightModule(SynthtuneModule):
    """Learned per-sample weights ω = softmax(g_Θ(e)) that minimise MMD² between synthetic and real embeddings.

    Args:
        backbone: the embedder the data uses (``minilm`` or a causal LM); recorded in checkpoints.
        hidden: width of the projection g_Θ.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        bandwidth: ``median`` (median heuristic), ``mixture`` (median × {0.5, 1, 2}), a positive number
            or a list of them.
        num_resample: rows to draw at predict time (``None``: as many as there are synthetic rows).
        replace: draw with replacement.
        resample_output: where the resampled rows go (default ``<default_root_dir>/resampled.jsonl``).
        label_mode: ``per_label`` (default): learn the weights per label (each label's synthetic rows
            against that label's real rows) and resample each label's share of the synthetic rows, so
            the label balance is kept (every row needs a ``label``, the same values on both sides);
            ``blind``: one set of weights over all rows, labels ignored.
        stratify_label: with ``label_mode: blind``, still draw each label's share of ``num_resample``
            from that label's rows by ω (``per_label`` always does).
        eval_batches: minibatches averaged for the MMD² in the predict report.
        seed: seed of g_Θ's initialisation, the median-heuristic subsample and the resampling.
    """

    data_kind = EmbeddingData

    def __init__(
        self,
        backbone: str = DEFAULT_FEATURIZER,
        hidden: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        bandwidth: BandwidthSpec = "median",
        num_resample: int | None = None,
        replace: bool = True,
        resample_output: str | None = None,
        label_mode: Literal["per_label", "blind"] = "per_label",
        stratify_label: bool = False,
        eval_batches: int = 8,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if hidden < 1 or not lr > 0 or weight_decay < 0 or eval_batches < 1:
            raise SynthtuneError("need hidden >= 1, lr > 0, weight_decay >= 0 and eval_batches >= 1")
        if num_resample is not None and num_resample < 0:
            raise SynthtuneError(f"num_resample must be >= 0, got {num_resample}")
        if label_mode not in ("per_label", "blind"):
            raise SynthtuneError(f"label_mode must be 'per_label' or 'blind', got {label_mode!r}")
        self.save_hyperparameters()
        self.net: SampleWeightNet | None = None
        self.bandwidths: list[float] = []
        self.dim = 0
        self._weights: torch.Tensor | None = None
        self._scores: torch.Tensor | None = None
        self.syn_labels: torch.Tensor | None = None
        self.real_labels: torch.Tensor | None = None

    # ----------------------------------------------------------------- setup

    def build(self, dim: int) -> None:
        """Create g_Θ for embeddings of dimension ``dim`` (seeded)."""
        if self.net is not None:
            if self.dim != dim:
                raise SynthtuneError(f"this module was built for {self.dim}-d embeddings, got {dim}-d; use the same embedder")
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.hparams.seed)
            self.net = SampleWeightNet(dim, hidden=self.hparams.hidden)
        self.dim = dim

    def connect(self, info: EmbeddingData) -> None:
        """Build g_Θ for the embeddings' dimension and fix the kernel bandwidths from both sets."""
        super().connect(info)
        syn, real = info.synthetic_embeddings, info.real_embeddings
        if syn is None or real is None:
            raise SynthtuneError(f"{info.source} has no embeddings yet; run the data's setup before connecting")
        self.build(int(syn.shape[1]))
        # Bandwidths are fixed before training from both sets (raises when all embeddings are identical).
        self.bandwidths = resolve_bandwidths(self.hparams.bandwidth, syn, real, seed=self.hparams.seed)
        log.info("MMD bandwidths: %s", ", ".join(f"{b:.4g}" for b in self.bandwidths))
        if self.hparams.label_mode == "per_label":
            self.syn_labels, self.real_labels = label_ids(info.synthetic_rows, info.real_rows)

    def checkpoint_signature(self) -> dict[str, Any]:
        return {"method": "synalign_mmd_weights", "backbone": self.hparams.backbone, "dim": self.dim,
                "hidden": self.hparams.hidden}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    # ---------------------------------------------------------------- fit
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        syn, real = batch["syn"], batch["real"]
        with torch.no_grad():  # kernels are constants; only ω = softmax(g_Θ(e)) carries gradients
            k_ss = rbf_kernel(syn, syn, self.bandwidths)
            k_sr = rbf_kernel(syn, real, self.bandwidths)
            k_rr = rbf_kernel(real, real, self.bandwidths)
        scores = self.net.scores(syn)
        self.check_finite(scores.sum(), "the sample weights' scores g_Θ(e)")  # NaN weights stop the run
        if self.hparams.label_mode == "per_label":
            syn_y = self.syn_labels[batch["index"].cpu()].to(syn.device)
            real_y = self.real_labels[batch["real_index"].cpu()].to(syn.device)
            loss = label_conditional_mmd2(k_ss, k_sr, k_rr, scores, syn_y, real_y)  # Σ_c p_c MMD²_c
            with torch.no_grad():
                baseline = label_conditional_mmd2(k_ss, k_sr, k_rr, torch.zeros_like(scores), syn_y, real_y)
        else:
            weights = torch.softmax(scores, dim=0)  # ω_i = softmax_i(g_Θ(e_i)) over the minibatch
            loss = mmd2_from_kernels(k_ss, k_sr, k_rr, weights)  # weighted MMD² (V-statistic)
            with torch.no_grad():
                baseline = mmd2_from_kernels(k_ss, k_sr, k_rr, torch.full_like(weights, 1.0 / weights.shape[0]))
        self.check_finite(loss, "the MMD² loss")
        size = syn.shape[0]
        self.log("train/mmd2", loss, prog_bar=True, batch_size=size)
        self.log("train/mmd2_uniform", baseline, batch_size=size)
        return loss

    # ------------------------------------------------------------ predict
    def params(self) -> dict[str, Any]:
        h = self.hparams
        return {"backbone": h.backbone, "hidden": h.hidden, "bandwidths": [round(b, 8) for b in self.bandwidths],
                "label_mode": h.label_mode, "seed": h.seed, "checkpoint": self.checkpoint_fingerprint}

    def on_predict_start(self) -> None:
        super().on_predict_start()
        if self.checkpoint_fingerprint == "untrained":
            log.warning("predicting without --ckpt_path: the weights are uniform (an untrained g_Θ)")
        with torch.no_grad():
            emb = self.data_info.synthetic_embeddings.to(self.device)
            scores = torch.cat([self.net.scores(emb[i: i + 65536]) for i in range(0, emb.shape[0], 65536)]).cpu()
        if not torch.isfinite(scores).all():
            raise SynthtuneError("the learned weights are NaN or inf; refit with a lower learning rate (--model.init_args.lr)")
        self._scores = scores
        if self.hparams.label_mode == "per_label":
            self._weights = per_label_weights(scores, self.syn_labels)  # ω_i = N_c/N · softmax_{j∈c}(g)_i
        else:
            self._weights = torch.exp(scores - torch.logsumexp(scores, dim=0))  # ω over all N rows

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        params = self.params()
        rows = []
        for i in batch["id"].tolist():
            source = self.data_info.synthetic_rows[i]
            row = {k: v for k, v in source.items() if k not in ("id", "params", "method")}
            row.update({"id": i, "synthetic_id": source.get("id", i), "source_method": source.get("method"),
                        "weight": float(self._weights[i]), "score": float(self._scores[i]),
                        "method": "synalign_mmd_weights", "params": params})
            rows.append(row)
        return rows

    def resampled_path(self) -> Path:
        if self.hparams.resample_output:
            return Path(self.hparams.resample_output).expanduser()
        return Path(self.trainer.default_root_dir) / RESAMPLED_FILE

    def on_predict_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        data, h = self.data_info, self.hparams
        n = len(data.synthetic_rows) if h.num_resample is None else h.num_resample
        if h.label_mode == "per_label" or h.stratify_label:
            picks = self.stratified_picks([row.get("label") for row in data.synthetic_rows], n)
        else:
            picks = resample(self._weights, n, replace=h.replace, seed=h.seed)
        params = {**self.params(), "num_resample": n, "replace": h.replace,
                  "stratify_label": h.label_mode == "per_label" or h.stratify_label}
        out = []
        for j, i in enumerate(picks.tolist()):
            source = data.synthetic_rows[i]
            row = {k: v for k, v in source.items() if k not in ("id", "params", "method")}
            row.update({"id": j, "synthetic_index": i, "synthetic_id": source.get("id", i),
                        "source_method": source.get("method"), "weight": float(self._weights[i]),
                        "method": "synalign_mmd_resample", "params": params})
            out.append(row)
        path = self.resampled_path()
        atomic_write_jsonl(path, out)
        report = self.mmd_report(data.synthetic_embeddings, data.real_embeddings, picks)
        report.update({"num_synthetic": len(data.synthetic_rows), "num_real": len(data.real_rows), "num_resample": n,
                       "replace": h.replace, "unique_resampled": int(picks.unique().numel()),
                       "resampled_output": str(path), "checkpoint": self.checkpoint_fingerprint})
        atomic_write_json(path.with_name(path.name + ".report.json"), report)
        log.info("wrote %d resampled rows to %s; MMD² %.5f (uniform) -> %.5f (weighted) -> %.5f (resampled)",
                 n, path, report["mmd2_uniform"], report["mmd2_weighted"], report["mmd2_resampled"])

    def stratified_picks(self, labels: list[Any], n: int) -> torch.Tensor:
        """Per-label draws by ω: label c gets round(n · share_c) picks (largest remainders first)."""
        if any(label is None for label in labels):
            raise SynthtuneError("stratify_label needs a 'label' on every synthetic row; add labels or set stratify_label false")
        keys = sorted(set(labels), key=str)
        rows = {k: torch.tensor([i for i, label in enumerate(labels) if label == k]) for k in keys}
        exact = {k: n * len(rows[k]) / len(labels) for k in keys}
        counts = {k: int(exact[k]) for k in keys}
        for k in sorted(keys, key=lambda k: counts[k] - exact[k])[: n - sum(counts.values())]:
            counts[k] += 1  # largest remainders get the leftover picks
        picks = [rows[k][resample(self._weights[rows[k]], counts[k], replace=self.hparams.replace,
                                  seed=self.hparams.seed + j)] for j, k in enumerate(keys) if counts[k]]
        return torch.cat(picks) if picks else torch.empty(0, dtype=torch.long)

    def mmd_report(self, syn: torch.Tensor, real: torch.Tensor, picks: torch.Tensor) -> dict[str, Any]:
        """MMD² to the real set with uniform weights, with ω, and of the resampled rows (minibatch estimates)."""
        h = self.hparams
        kwargs = {"num_batches": h.eval_batches, "seed": h.seed}
        uniform = mmd2_minibatch(syn, real, self.bandwidths, **kwargs)
        weighted = mmd2_minibatch(syn, real, self.bandwidths, weights=self._weights.float(), **kwargs)
        resampled = mmd2_minibatch(syn[picks], real, self.bandwidths, **kwargs) if picks.numel() else float("nan")
        return {"bandwidths": self.bandwidths, "mmd2_uniform": uniform, "mmd2_weighted": weighted,
                "mmd2_resampled": resampled, "effective_sample_size": effective_sample_size(self._weights)}
