"""What every synthtune datamodule shares.

* the backbone's tokenizer, loaded on first use (``backbone`` is linked from the model by the CLI);
* an exactly resumable training loader: Lightning checkpoints its position, and the batches that
  reached the model are counted here, in ``on_before_batch_transfer``;
* the ids a resumed ``predict`` skips: the JSONL writer passes the ids already on disk to
  ``skip_ids`` before the predict loader is built; the model states how many ids each item owns
  (``set_ids_per_item``, called by :func:`synthtune.contract.connect`);
* :meth:`SynthtuneDataModule.describe`: what the model may need from the data, as one
  :class:`~synthtune.contract.DataInfo` (the model–data contract).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import lightning.pytorch as pl
from torch.utils.data import Dataset

from synthtune.components.backbone import load_tokenizer
from synthtune.contract import DataInfo
from synthtune.datamodules.resumable import ResumableDataLoader, ResumableSampler
from synthtune.errors import SynthtuneError
from synthtune.registry import datamodule


class ListDataset(Dataset):
    """A map-style dataset over a list."""

    def __init__(self, items: Sequence[Any]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        return self.items[index]


@datamodule
class SynthtuneDataModule(pl.LightningDataModule):
    """Base class; subclasses set ``self.backbone`` in ``__init__`` after calling ``super().__init__()``."""

    backbone: str

    def __init__(self) -> None:
        super().__init__()
        self._tokenizer = None
        self._skip: set[int] = set()
        self._train_loader: ResumableDataLoader | None = None
        self.ids_per_item = 1

    def describe(self) -> DataInfo:
        """What a model may need from this data, after ``setup`` (subclasses fill in what they have)."""
        return DataInfo(source=type(self).__name__)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.backbone)
        return self._tokenizer

    def resumable_loader(self, dataset: Dataset, batch_size: int, collate_fn: Callable | None, seed: int,
                         num_workers: int = 0) -> ResumableDataLoader:
        """The shuffled training loader that resumes mid-epoch exactly (see ``resumable.py``)."""
        sampler = ResumableSampler(dataset, batch_size, shuffle=True, seed=seed)
        self._train_loader = ResumableDataLoader(dataset, batch_size=batch_size, sampler=sampler,
                                                 collate_fn=collate_fn, num_workers=num_workers)
        return self._train_loader

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and self._train_loader is not None:
            self._train_loader.mark_consumed()
        return batch

    def skip_ids(self, ids: set[int]) -> None:
        """Ids already written by an earlier (interrupted) predict run; they are not generated again."""
        self._skip = set(ids)

    def set_ids_per_item(self, n: int) -> None:
        """Output ids each predict item owns (the model's ``ids_per_item``; 1 unless it writes blocks)."""
        if n < 1:
            raise SynthtuneError(f"ids per item must be ≥ 1, got {n}")
        self.ids_per_item = n
