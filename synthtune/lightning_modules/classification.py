"""What the few-shot classifiers share (prompt tuning, full fine-tuning): the supervised step over a
combination strategy's batch, and accuracy / macro-F1 on the dev and test sets.

A subclass provides ``class_logits(rows) -> [B, C]``, ``self.tokenizer``, ``self.is_encoder_decoder``
and the hyper-parameters ``template``, ``label_words``, ``template_style``, ``multi_token_labels``,
``max_field_tokens`` and ``label_smoothing``; it calls :meth:`ClassifierSteps.set_reader` once the
task is known (or :meth:`ClassifierSteps.init_metrics` when it reads no label words).
"""

from __future__ import annotations

import string
from typing import Any

import torch
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from synthtune.components.prompt_tuning.combination import smoothed_cross_entropy, smoothing_for_step
from synthtune.components.prompt_tuning.prompt_format import LabelWordReader, build_reader
from synthtune.components.prompt_tuning.verbalizer import T5_MASK, Verbalizer
from synthtune.contract import FewShotData
from synthtune.errors import SynthtuneError
from synthtune.records import template_fields
from synthtune.tasks import default_prompt_format


def rename_fields(template: str, names: dict[str, str]) -> str:
    """``template`` with each field in ``names`` renamed (``{review}`` → ``{text}``); the rest as written."""
    if not names:
        return template
    parts = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        parts.append(literal.replace("{", "{{").replace("}", "}}"))
        if name is not None:
            parts.append("{" + names.get(name, name) + (f"!{conversion}" if conversion else "")
                         + (f":{spec}" if spec else "") + "}")
    return "".join(parts)


class ClassifierSteps:
    """Mixin for a LightningModule that scores rows of a labelled task (see the module docstring)."""

    combination: str = "real"
    reader: LabelWordReader | None = None

    def set_reader(self, task: str, columns: dict[str, str] | None = None) -> None:
        """Resolve the template and label words (``task``'s defaults fill what is ``None``) and the metrics;
        ``columns`` maps a data column to the row field it is read into (``review`` → ``text``), so a template
        that names the column reads that field."""
        h = self.hparams
        template, label_words = h.template, h.label_words
        if template is None or label_words is None:
            default = default_prompt_format(task, h.template_style)
            if template is None:
                template = default.template + (f" {T5_MASK}" if self.is_encoder_decoder else "")
            label_words = default.label_words if label_words is None else label_words
        template = rename_fields(template, columns or {})
        self.reader = build_reader(self.tokenizer, self.is_encoder_decoder, template, label_words,
                                   template_fields(template), multi_token=h.multi_token_labels,
                                   max_field_tokens=h.max_field_tokens)
        self.init_metrics(self.reader.verbalizer.num_classes)

    def connect_reader(self, info: FewShotData) -> None:
        """Resolve the prompt format for the task (unless fully given) and check it against the task."""
        columns = {c: f for c, f in zip(info.columns, info.text_fields) if c != f}  # {review} is the text field
        if (self.reader is None or self.hparams.template is None or self.hparams.label_words is None
                or any(f in columns for f in self.reader.fields)):
            self.set_reader(info.source, columns)
        if info.text_fields:
            unknown = [f for f in self.reader.fields if f not in info.text_fields]
            if unknown:
                raise SynthtuneError(f"template field(s) {unknown} are not text fields of task {info.source} "
                                     f"({list(info.text_fields)}); fix the template")
        if info.label_names and len(info.label_names) != self.verbalizer.num_classes:
            raise SynthtuneError(f"{self.verbalizer.num_classes} label words {list(self.verbalizer.label_words)} "
                                 f"for {len(info.label_names)} labels {list(info.label_names)} of task {info.source}; "
                                 f"give one label word per label")

    @property
    def verbalizer(self) -> Verbalizer:
        if self.reader is None:
            raise SynthtuneError("the template and label words are not resolved yet: connect the module to a "
                                 "FewShotDataModule (or pass both template and label_words)")
        return self.reader.verbalizer

    def init_metrics(self, num_classes: int) -> None:
        """Accuracy and macro-F1 for the ``val`` and ``test`` splits."""
        self.metrics = torch.nn.ModuleDict({
            f"{split}_{name}": metric
            for split in ("val", "test")
            for name, metric in (("acc", MulticlassAccuracy(num_classes=num_classes, average="micro")),
                                 ("f1", MulticlassF1Score(num_classes=num_classes, average="macro")))
        })

    def supervised_step(self, batch: dict[str, Any]) -> Tensor:
        """Cross-entropy over the step's real and synthetic examples (smoothed for synthetic ones
        under ``real+syn+ls``)."""
        parts = [p for p in (batch.get("real"), batch.get("syn")) if p is not None]
        rows = [r for p in parts for r in p["rows"]]
        labels = torch.cat([p["label"] for p in parts]).to(self.device)
        step = {kind: list(range(len(batch[kind]["rows"]))) if batch.get(kind) is not None else None
                for kind in ("real", "syn")}
        # Label smoothing on synthetic examples only (real+syn+ls); zeros for every other example.
        smoothing = smoothing_for_step(step, self.combination, self.hparams.label_smoothing)
        loss = smoothed_cross_entropy(self.class_logits(rows), labels, smoothing)
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(rows))
        return loss

    def _evaluate(self, part: dict[str, Any], split: str) -> None:
        logits = self.class_logits(part["rows"])
        labels = part["label"].to(self.device)
        n = labels.shape[0]
        preds = logits.argmax(dim=-1)
        for name in ("acc", "f1"):
            metric = self.metrics[f"{split}_{name}"]
            metric.update(preds, labels)
            self.log(f"{split}/{name}", metric, on_step=False, on_epoch=True, prog_bar=name == "acc", batch_size=n)
        self.log(f"{split}/loss", torch.nn.functional.cross_entropy(logits, labels), on_step=False, on_epoch=True,
                 sync_dist=True, batch_size=n)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")
