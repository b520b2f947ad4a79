"""Few-shot soft-prompt tuning of a frozen LM on real + synthetic data (Guo et al., Alg. 2).

fit (``mode: train``): a soft prompt P is prepended to the input of a frozen LM and the label is read
through a verbalizer (:mod:`synthtune.components.prompt_tuning.verbalizer`); the loss is
``L_ce(P) = −E log Pr_θ([MASK] = y | [P; E])``. The datamodule's ``strategy`` decides how real and
synthetic examples meet: ``paired`` puts one real and one synthetic batch in every step and, with
``gradient_surgery``, projects the synthetic gradient away from the real one when they conflict
(manual optimisation, gradients over P only); every other strategy uses Lightning's automatic path
(``real+syn+ls`` smooths the labels of synthetic examples only).

The update of P is Alg. 2's ``P ← P − η·δ``: the default optimizer is plain SGD (no weight decay,
no momentum), under which the projected δ is exactly what is applied. ``adafactor`` (the optimizer
of T5 prompt tuning, fixed lr) and ``adamw`` are named alternatives; both rescale δ per coordinate,
so the projection's geometry is not what reaches P. The default lr comes from a dev-split sweep
(bench/prompt_tuning_lr.py; numbers in docs/results/prompt_tuning_lr.md).

The template and label words default to the task's ``decoder`` style (``synthtune/tasks.py``);
``template_style: lmbff`` picks the LM-BFF ones.

test: accuracy and macro-F1 on the datamodule's test set. ``mode: zero_shot`` scores the frozen LM
with the verbalizer and no prompt; ``mode: in_context`` also puts k labelled demonstrations per
class in front of each input. Neither trains: run them with ``synthtune test``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.prompt_tuning.combination import check_strategy
from synthtune.components.prompt_tuning.gradient_surgery import surgery_step
from synthtune.components.prompt_tuning.prompt_format import LabelWordReader
from synthtune.components.softsrv.soft_prompts import NonParametricPrompt
from synthtune.contract import FewShotData
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.classification import ClassifierSteps
from synthtune.lightning_modules.flat_options import FlatBackboneOptions
from synthtune.lightning_modules.frozen_backbone import FrozenBackboneModule
from synthtune.templates import Template
from synthtune.registry import method

MODES = ("train", "zero_shot", "in_context")
OPTIMIZERS = ("sgd", "adafactor", "adamw")
#: Default SGD learning rate of P, chosen by the dev sweep in docs/results/prompt_tuning_lr.md.
LR_SGD = 0.3
_COUNTERS_KEY = "prompt_tuning_counters"


@method
class PromptTuningModule(ClassifierSteps, FlatBackboneOptions, FrozenBackboneModule):
    """A soft prompt P tuned on a frozen LM for few-shot classification.

    Args:
        template: how a row becomes the LM input, e.g. ``"{text} It was"`` (decoder-only: ends where the
            label word comes) or ``"{text} It was <extra_id_0>."`` (T5). Fields are the task's text
            fields (``text`` or ``text_a``/``text_b``). ``None``: the task's default of ``template_style``.
        label_words: one word per label, in label-index order, e.g. ``[" terrible", " great"]``;
            ``None``: the task's default of ``template_style``.
        template_style: which task default fills a ``None`` template / label words: ``decoder`` (an
            instruction, the input and an answer cue, for instruction-tuned decoders) or ``lmbff``
            (the LM-BFF manual templates); see ``synthtune/tasks.py``.
        backbone: the frozen LM (decoder-only or T5): a name or its spec (:class:`BackboneSpec`; P stays fp32).
        prompt_length: number of soft tokens in P (100 in the paper).
        mode: ``train`` (prompt tuning), ``zero_shot`` or ``in_context`` (reference rows, test only).
        gradient_surgery: project conflicting synthetic gradients (``paired`` strategy only).
        eps: weight ε ≥ 0 of the synthetic gradient in ``paired``: δ = δ_real + ε·δ'_syn.
        label_smoothing: smoothing of synthetic labels under ``real+syn+ls``.
        optimizer: the update rule of P: ``sgd`` (Alg. 2's P ← P − η·δ, so the projected δ is exactly
            what is applied; the default), ``adafactor`` (the T5 prompt-tuning optimizer, lr as given,
            no relative step) or ``adamw`` (its per-coordinate scaling reshapes the projected δ).
        lr: learning rate η of P (chosen for ``sgd`` by a dev sweep: docs/results/prompt_tuning_lr.md).
        momentum: heavy-ball momentum of ``sgd`` (0 = the plain update of Alg. 2).
        weight_decay: weight decay of P (0 by default: Alg. 2 has none).
        multi_token_labels: allow label words of several tokens (scored by their summed log-probs).
        max_field_tokens: each text field is cut to this many tokens, so the template's end survives.
        demonstrations_per_class: labelled demonstrations per class in ``in_context`` mode.
        demo_separator: text between demonstrations (and before the query) in ``in_context`` mode.
        seed: seed of P's initialisation and of the choice of demonstrations.
    """

    data_kind = FewShotData

    def __init__(
        self,
        template: Template | None = None,
        label_words: list[str] | None = None,
        template_style: Literal["decoder", "lmbff"] = "decoder",
        backbone: BackboneSpec | str = DEFAULT_BACKBONE,
        prompt_length: int = 100,
        mode: Literal["train", "zero_shot", "in_context"] = "train",
        gradient_surgery: bool = True,
        eps: float = 1.0,
        label_smoothing: float = 0.1,
        optimizer: Literal["sgd", "adafactor", "adamw"] = "sgd",
        lr: float = LR_SGD,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        multi_token_labels: bool = False,
        max_field_tokens: int = 128,
        demonstrations_per_class: int = 1,
        demo_separator: str = "\n",
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise SynthtuneError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
        if prompt_length < 1:
            raise SynthtuneError(f"prompt_length must be a positive number of soft tokens, got {prompt_length}")
        if not np.isfinite(eps) or eps < 0:
            raise SynthtuneError(f"eps (the synthetic gradient weight) must be a finite number >= 0, got {eps}; "
                                 f"pass e.g. --model.init_args.eps 1.0")
        if not 0.0 <= label_smoothing < 1.0:
            raise SynthtuneError(f"label_smoothing must be in [0, 1), got {label_smoothing}; pass e.g. 0.1")
        if optimizer not in OPTIMIZERS:
            raise SynthtuneError(f"unknown optimizer {optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        if not lr > 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise SynthtuneError(f"need lr > 0, 0 <= momentum < 1 and weight_decay >= 0, got {lr}, {momentum}, "
                                 f"{weight_decay}; fix --model.init_args")
        if max_field_tokens < 1 or demonstrations_per_class < 0:
            raise SynthtuneError("max_field_tokens must be >= 1 and demonstrations_per_class >= 0")
        bb = self.load_frozen_backbone(self.flat_backbone(backbone))
        self.save_hyperparameters()
        self.is_encoder_decoder = bb.is_encoder_decoder
        bb.check_prompt_length(prompt_length)
        self.hidden_size = bb.hidden_size
        self.soft_prompt = NonParametricPrompt(prompt_length, bb.hidden_size,
                                               init=self.random_token_prompt((prompt_length,), seed))
        self.reader: LabelWordReader | None = None
        if template is not None and label_words is not None:  # fully given: checked now, not per task
            self.set_reader("")
        self.combination = "real"
        self._context_ids: list[int] = []
        self.paired_steps = 0
        self.conflicts = 0

    # ------------------------------------------------------------ set-up
    def checkpoint_signature(self) -> dict[str, Any]:
        h = self.hparams
        return {"method": "prompt_tuning", "backbone": self.backbone_spec.name, "prompt_length": h.prompt_length,
                "hidden_size": self.hidden_size, "label_words": list(self.verbalizer.label_words)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[_COUNTERS_KEY] = {"paired_steps": self.paired_steps, "conflicts": self.conflicts}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        counters = checkpoint.get(_COUNTERS_KEY, {})
        self.paired_steps = int(counters.get("paired_steps", 0))
        self.conflicts = int(counters.get("conflicts", 0))

    def connect(self, info: FewShotData) -> None:
        """Check the template and label words against the task; take the strategy and demonstrations."""
        super().connect(info)
        self.connect_reader(info)
        self.combination = check_strategy(info.strategy)
        if self.hparams.mode == "in_context":
            self.set_demonstrations(list(info.demonstrations))

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.hparams.mode != "train":
            raise SynthtuneError(f"mode {self.hparams.mode!r} evaluates the frozen LM without training; run "
                                 f"`synthtune test` with it, or use --model.init_args.mode train to fit")
        # Gradient surgery needs both gradients before any step: manual optimisation for `paired`.
        self.automatic_optimization = stage != "fit" or self.combination != "paired"
        if (not self.automatic_optimization and self._trainer is not None
                and (self.trainer.accumulate_grad_batches != 1 or self.trainer.gradient_clip_val)):
            raise SynthtuneError("the paired strategy steps once per pair of batches with its own gradient; "
                                 "remove --trainer.accumulate_grad_batches and --trainer.gradient_clip_val")

    def set_demonstrations(self, rows: list[dict[str, Any]]) -> None:
        """Pick ``demonstrations_per_class`` labelled rows per class (by ``seed``) as the in-context prefix."""
        k = self.hparams.demonstrations_per_class
        rng = np.random.default_rng(self.hparams.seed)
        chosen: list[dict[str, Any]] = []
        for label in range(self.verbalizer.num_classes):
            pool = [r for r in rows if r["label"] == label]
            chosen.extend(pool[i] for i in rng.permutation(len(pool))[:k])
        if k and not chosen:
            raise SynthtuneError("in_context mode needs labelled training rows for its demonstrations; "
                                 "use a FewShotDataModule with real data")
        chosen = [chosen[i] for i in rng.permutation(len(chosen))]  # classes interleaved, not grouped
        sep = self.hparams.demo_separator
        parts = [self.reader.demonstration(r) for r in chosen]
        text = sep.join(parts) + sep if parts else ""
        self._context_ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []

    # ----------------------------------------------------------- scoring
    def encode(self, rows: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        """Token ids and mask of the rendered rows (after the in-context demonstrations, if any)."""
        ids, mask = self.reader.encode(rows, self._context_ids)
        return ids.to(self.device), mask.to(self.device)

    def class_logits(self, rows: list[dict[str, Any]]) -> Tensor:
        """[B, C] verbalizer scores of ``rows`` (with P in train mode, without it otherwise)."""
        ids, mask = self.encode(rows)
        prefix = self.soft_prompt(None, batch_size=1) if self.hparams.mode == "train" else None
        return self.reader.scores(self.backbone, prefix, ids, mask)

    def loss_on(self, part: dict[str, Any]) -> Tensor:
        """Plain cross-entropy of one kind of examples (L_ce)."""
        return torch.nn.functional.cross_entropy(self.class_logits(part["rows"]), part["label"].to(self.device))

    # ----------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        if not self.automatic_optimization:
            return self.paired_step(batch)
        return self.supervised_step(batch)

    def paired_gradients(self, batch: dict[str, Any]) -> dict[str, float | bool]:
        """Write δ = δ_real + ε·δ'_syn (Alg. 2) into P's ``.grad`` and return the step's statistics."""
        if batch.get("real") is None or batch.get("syn") is None:
            raise SynthtuneError("the paired strategy needs a real and a synthetic batch in every step; "
                                 "use FewShotDataModule with strategy paired and a synthetic file")
        loss_real = self.loss_on(batch["real"])
        loss_syn = self.loss_on(batch["syn"])
        self.check_finite(loss_real, "real loss")
        self.check_finite(loss_syn, "synthetic loss")
        params = [p for p in self.soft_prompt.parameters() if p.requires_grad]
        eps = float(self.hparams.eps)
        # Under DDP, surgery_step all-reduces δ_real and δ_syn BEFORE the conflict test and the
        # projection: the projection is non-linear, so projecting per rank and averaging would not
        # equal projecting the global-batch gradient; averaging first makes N processes with
        # batches b_1..b_N equal one process with the global batch (equal, mean-reduced shards).
        # Without surgery it is the same update with δ_syn added as it is.
        stats = surgery_step(params, loss_real, loss_syn, eps, project=bool(self.hparams.gradient_surgery))
        stats["loss_real"], stats["loss_syn"] = float(loss_real.detach()), float(loss_syn.detach())
        return stats

    def paired_step(self, batch: dict[str, Any]) -> None:
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        stats = self.paired_gradients(batch)
        optimizer.step()
        self.paired_steps += 1
        self.conflicts += int(bool(stats["conflict"]) and bool(self.hparams.gradient_surgery))
        n = len(batch["real"]["rows"]) + len(batch["syn"]["rows"])
        self.log("train/loss", stats["loss_real"] + stats["loss_syn"], prog_bar=True, batch_size=n)
        self.log("train/loss_real", stats["loss_real"], batch_size=n)
        self.log("train/loss_syn", stats["loss_syn"], batch_size=n)
        self.log("train/cosine", stats["cosine"], batch_size=n)
        # Conflict rate: the fraction of paired steps whose synthetic gradient was projected.
        self.log("train/conflict_rate", self.conflicts / self.paired_steps, prog_bar=True, batch_size=n)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return build_optimizer(self.hparams.optimizer, self.soft_prompt.parameters(), self.hparams.lr,
                               self.hparams.momentum, self.hparams.weight_decay)


def build_optimizer(name: str, params: Any, lr: float, momentum: float = 0.0,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer of P by name: ``sgd`` (P ← P − η·δ, optionally with momentum), ``adafactor``
    (transformers' Adafactor with a fixed lr, as in T5 prompt tuning) or ``adamw``."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False,
                         weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise SynthtuneError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")
