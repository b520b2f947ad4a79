"""Full-model fine-tuning baselines of the few-shot table (Guo et al., Table 1 "FT"; Gao et al., LM-BFF).

Every weight of the backbone is trained (a private copy: the shared frozen backbone is untouched).

* ``mode: head`` (standard fine-tuning): the input is the row's text (``text``, or ``text_a`` and
  ``text_b`` on two lines); a new linear head reads the final hidden state of the last real token
  (decoder-only) or the mean encoder state (T5): ``logits = W h + b``.
* ``mode: prompt`` (prompt-based fine-tuning, LM-BFF): the row is rendered with the task's template
  and the classes are read through the label words, as in prompt tuning but with no soft prompt and
  all weights trained.

Both train with cross-entropy under the datamodule's automatic strategies (``real``, ``syn``,
``real+syn``, ``real+syn+ls``, ``real->syn``, ``syn->real``); ``paired`` (gradient surgery over the
soft prompt) is prompt tuning's. test: accuracy and macro-F1, like :class:`PromptTuningModule`.
A checkpoint holds the whole fine-tuned model.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

import torch
from torch import Tensor

from synthtune.components.backbone import DEFAULT_BACKBONE, load_backbone, row_major
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.prompt_tuning.combination import check_strategy
from synthtune.components.prompt_tuning.verbalizer import encode_texts, render_row
from synthtune.contract import FewShotData
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.base import SynthtuneModule
from synthtune.lightning_modules.flat_options import FlatBackboneOptions
from synthtune.templates import Template
from synthtune.lightning_modules.classification import ClassifierSteps
from synthtune.registry import method

FT_MODES = ("head", "prompt")


@method
class FineTuningModule(ClassifierSteps, FlatBackboneOptions, SynthtuneModule):
    """Full-model fine-tuning for few-shot classification: a classification head or LM-BFF prompt-based FT.

    Args:
        mode: ``head`` (a linear head over the model's representation) or ``prompt`` (template + label
            words, LM-BFF).
        backbone: the model to fine-tune (decoder-only or T5): a name or its spec (:class:`BackboneSpec`; ``dtype``
            is that of the trained copy; ``compile`` and ``gradient_checkpointing`` are not supported here).
        num_labels: number of classes of the head (``head`` mode; checked against the task).
        template: ``prompt`` mode: the template, ``None`` for the task's default of ``template_style``.
        label_words: ``prompt`` mode: one word per label, ``None`` for the task's default.
        template_style: ``decoder`` or ``lmbff`` (see ``synthtune/tasks.py``).
        multi_token_labels: allow label words of several tokens (scored by their summed log-probs).
        max_field_tokens: each text field is cut to this many tokens.
        lr: AdamW learning rate of all weights (1e-5 in LM-BFF).
        weight_decay: AdamW weight decay.
        label_smoothing: smoothing of synthetic labels under ``real+syn+ls``.
        seed: seed of the head's initialisation.
    """

    data_kind = FewShotData

    def __init__(
        self,
        mode: Literal["head", "prompt"] = "prompt",
        backbone: BackboneSpec | str = DEFAULT_BACKBONE,
        num_labels: int = 2,
        template: Template | None = None,
        label_words: list[str] | None = None,
        template_style: Literal["decoder", "lmbff"] = "decoder",
        multi_token_labels: bool = False,
        max_field_tokens: int = 128,
        lr: float = 1e-5,
        weight_decay: float = 0.0,
        label_smoothing: float = 0.1,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in FT_MODES:
            raise SynthtuneError(f"unknown mode {mode!r}; use one of {', '.join(FT_MODES)}")
        if num_labels < 2 or max_field_tokens < 1 or not lr > 0 or weight_decay < 0:
            raise SynthtuneError(f"need num_labels >= 2, max_field_tokens >= 1, lr > 0 and weight_decay >= 0, got "
                                 f"{num_labels}, {max_field_tokens}, {lr}, {weight_decay}; fix --model.init_args")
        if not 0.0 <= label_smoothing < 1.0:
            raise SynthtuneError(f"label_smoothing must be in [0, 1), got {label_smoothing}; pass e.g. 0.1")
        self.backbone_spec = self.flat_backbone(backbone).name_and_dtype_only("fine_tuning")
        self.save_hyperparameters()
        bb = load_backbone(self.backbone_spec.name, self.backbone_spec.dtype)
        # A private, trainable copy: the loader shares its frozen model within the process.
        self.model = row_major(copy.deepcopy(bb.model)).requires_grad_(True)
        self.tokenizer = bb.tokenizer
        self.is_encoder_decoder = bb.is_encoder_decoder
        if mode == "head":
            torch.manual_seed(seed)
            self.head = torch.nn.Linear(bb.hidden_size, num_labels, dtype=next(self.model.parameters()).dtype)
            self.init_metrics(num_labels)
        elif template is not None and label_words is not None:
            self.set_reader("")

    def checkpoint_signature(self) -> dict[str, Any]:
        h = self.hparams
        return {"method": "fine_tuning", "mode": h.mode, "backbone": self.backbone_spec.name, "num_labels": h.num_labels,
                "label_words": list(self.verbalizer.label_words) if h.mode == "prompt" else None}

    def connect(self, info: FewShotData) -> None:
        """Check the classes (and the template) against the task; refuse the paired strategy."""
        super().connect(info)
        if self.hparams.mode == "prompt":
            self.connect_reader(info)
        elif info.label_names and len(info.label_names) != self.hparams.num_labels:
            raise SynthtuneError(f"task {info.source} has {len(info.label_names)} labels but num_labels="
                                 f"{self.hparams.num_labels}; set --model.init_args.num_labels {len(info.label_names)}")
        self.combination = check_strategy(info.strategy)
        if self.combination == "paired":
            raise SynthtuneError("the paired strategy (gradient surgery over a soft prompt) is prompt tuning's; "
                                 "fine-tune with real, syn, real+syn, real+syn+ls, real->syn or syn->real")

    # ----------------------------------------------------------- scoring
    def head_logits(self, rows: list[dict[str, Any]]) -> Tensor:
        """[B, C] = W h + b, h the last real token's final state (decoder) or the mean encoder state (T5)."""
        fields = [f for f in ("text", "text_a", "text_b") if f in rows[0]]
        template = "\n".join(f"{{{f}}}" for f in fields)
        texts = [render_row(template, r, self.tokenizer, self.hparams.max_field_tokens, fields) for r in rows]
        ids, mask = encode_texts(self.tokenizer, texts, append_eos=self.is_encoder_decoder)
        ids, mask = ids.to(self.device), mask.to(self.device)
        if self.is_encoder_decoder:
            states = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(states.dtype)
            h = (states * weights).sum(dim=1) / weights.sum(dim=1)  # mean over the real tokens
        else:
            states = self.model.base_model(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            h = states[torch.arange(ids.shape[0], device=ids.device), mask.sum(dim=1) - 1]  # last real token
        return self.head(h).float()

    def class_logits(self, rows: list[dict[str, Any]]) -> Tensor:
        """[B, C] class scores of ``rows`` under the fine-tuned model."""
        if self.hparams.mode == "head":
            return self.head_logits(rows)
        ids, mask = self.reader.encode(rows)
        return self.reader.scores(self.model, None, ids.to(self.device), mask.to(self.device))

    # ----------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self.supervised_step(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
