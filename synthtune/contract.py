"""The model–data contract: what a datamodule hands to a model, typed, in one place.

* A datamodule describes what a model may need from it in one :class:`DataInfo` of its kind (:class:`TextData`,
  :class:`LabeledData`, :class:`FewShotData`, :class:`EmbeddingData`, :class:`PromptData`), built by its
  ``describe()`` after its ``setup``.
* A model declares the kind it reads (``data_kind``) and receives it in one hook, ``connect(info)`` (see
  ``SynthtuneModule``), which first checks the kind in one line (:func:`check_kind`); it never reads the
  datamodule itself. In the other direction a model states one number, ``ids_per_item`` (how many output ids
  each predict item owns), which the datamodule uses to skip finished items on resume.
* :func:`connect` is the only code that touches both sides. :class:`ConnectData` calls it for every
  ``fit``/``validate``/``test``/``predict``, after the datamodule's ``setup`` and before the model's;
  every synthtune module adds that callback itself (``configure_callbacks``), so a Trainer built in
  Python connects exactly like the CLI. Code without a Trainer calls ``model.connect(dm.describe())``.
* Values the user sets once for both sides (the backbone) are linked by the CLI instead
  (``link_arguments`` in ``synthtune/lightning_cli.py``).
* Provenance passes the model by: a predict batch may hold ``provenance`` (one dict per item, e.g. the data row a
  SoftSRV sample was generated from); the JSONL writer adds it to the rows of that item's ``id``. Its keys may not
  be any of :data:`SAMPLE_FIELDS`, the fields a generator's rows have.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch

from synthtune.errors import SynthtuneError

#: The fields every generated row has (its ``id``, ``text``, how it was made); a datamodule's ``provenance``
#: never takes their names (and the writer refuses one that meets a field a row has).
SAMPLE_FIELDS: tuple[str, ...] = ("id", "text", "context_index", "context_row", "seed", "hit_cap", "method",
                                  "params")


@dataclass(frozen=True)
class DataInfo:
    """What any data tells a model: where it comes from. Each kind of data adds its own fields in a subclass.

    Args:
        source: what the data is, for messages (a task name or a file).
    """

    #: The kind's name in messages, and the datamodules that describe it.
    kind: ClassVar[str] = "any"
    made_by: ClassVar[str] = "any datamodule"

    source: str = ""


@dataclass(frozen=True)
class TextData(DataInfo):
    """Texts to reconstruct (SoftSRV).

    Args:
        train_texts: the training texts, in the order of the training batches' ``index``.
        val_texts: the validation texts, in the order of the validation batches' ``index``.
        max_length: longest target text, in tokens.
    """

    kind: ClassVar[str] = "text"
    made_by: ClassVar[str] = "TextDataModule"

    train_texts: tuple[str, ...] = ()
    val_texts: tuple[str, ...] = ()
    max_length: int = 0


@dataclass(frozen=True)
class LabeledData(DataInfo):
    """Labelled texts to generate more of, by label (DawGen).

    Args:
        label_names: label index → name.
        text_fields: the rows' text fields (``text``, or ``text_a``/``text_b`` for pair tasks).
        first_sentences: pair tasks: the real first sentences (``text_a``) that predict conditions on.
        first_sentence_ids: their context tokens (``text_a`` then the separator), as the data encodes them.
        max_length: longest target text, in tokens.
        max_context_length: longest context (``text_a``), in tokens.
    """

    kind: ClassVar[str] = "labelled"
    made_by: ClassVar[str] = "LabeledDataModule"

    label_names: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    first_sentences: tuple[str, ...] = ()
    first_sentence_ids: tuple[tuple[int, ...], ...] = ()
    max_length: int = 0
    max_context_length: int = 0

    @property
    def is_pair(self) -> bool:
        """Rows are sentence pairs (``text_a``/``text_b``)."""
        return "text_a" in self.text_fields


@dataclass(frozen=True)
class FewShotData(DataInfo):
    """A few-shot classification task, real and synthetic rows combined by a strategy (prompt tuning, fine-tuning).

    Args:
        label_names: label index → name.
        text_fields: the rows' text fields (``text``, or ``text_a``/``text_b`` for pair tasks).
        strategy: how real and synthetic examples are combined in training.
        demonstrations: labelled real training rows (in-context demonstrations).
        columns: the data's column for each text field, in the same order (``("review",)`` when ``text_field`` is
            ``review``), so a template may name either.
    """

    kind: ClassVar[str] = "few-shot"
    made_by: ClassVar[str] = "FewShotDataModule"

    label_names: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()
    strategy: str = "real"
    demonstrations: tuple[dict[str, Any], ...] = ()
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptData(DataInfo):
    """Generation requests or input questions of the template baselines.

    Args:
        has_questions: predict items are input questions (answer mode), not request numbers.
        train_texts: the training examples a template may insert (``{example}``).
    """

    kind: ClassVar[str] = "prompt"
    made_by: ClassVar[str] = "PromptDataModule"

    has_questions: bool = False
    train_texts: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmbeddingData(DataInfo):
    """Synthetic and real rows with their embeddings (SynAlign's MMD weights).

    Args:
        synthetic_rows: synthetic rows whose weights are learned.
        real_rows: real rows they are compared with.
        synthetic_embeddings: ``[N, D]`` embeddings of ``synthetic_rows``.
        real_embeddings: ``[M, D]`` embeddings of ``real_rows``.
    """

    kind: ClassVar[str] = "embeddings"
    made_by: ClassVar[str] = "EmbeddingDataModule"

    synthetic_rows: tuple[dict[str, Any], ...] = ()
    real_rows: tuple[dict[str, Any], ...] = ()
    synthetic_embeddings: torch.Tensor | None = field(default=None, repr=False)
    real_embeddings: torch.Tensor | None = field(default=None, repr=False)


def check_kind(reader: str, needed: type[DataInfo], info: DataInfo) -> None:
    """One line when ``info`` is not of the kind ``reader`` (a model's name) needs."""
    if not isinstance(info, needed):
        given = f"{info.source or 'its data'} is {info.kind} data" if type(info) is not DataInfo else \
            f"{info.source or 'its data'} describes none"
        raise SynthtuneError(f"{reader} reads {needed.kind} data, but {given}; use {needed.made_by} as --data")


@runtime_checkable
class DescribesData(Protocol):
    """The datamodule's side of the contract (what ``SynthtuneDataModule`` implements): a datamodule with
    both methods, synthtune's or a user's own, is connected; the contract names no datamodule class, so
    it sits below the datamodules that import it."""

    def describe(self) -> DataInfo:
        """What a model may need from this data (after ``setup``)."""

    def set_ids_per_item(self, n: int) -> None:
        """The model's output ids per predict item (for resume skipping)."""


def connect(model: pl.LightningModule, datamodule: Any) -> DataInfo:
    """Hand ``datamodule``'s :class:`DataInfo` to ``model`` and tell the datamodule the model's
    ``ids_per_item``. Without a datamodule that :class:`DescribesData` the model gets a bare ``DataInfo``."""
    synthtune_data = isinstance(datamodule, DescribesData)
    info = datamodule.describe() if synthtune_data else DataInfo(source=type(datamodule).__name__ if datamodule
                                                                  is not None else "")
    model.connect(info)
    if synthtune_data:
        datamodule.set_ids_per_item(model.ids_per_item)
    return info


class ConnectData(pl.Callback):
    """Runs :func:`connect` once per Trainer run, between the datamodule's and the model's ``setup``."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        connect(pl_module, trainer.datamodule)
