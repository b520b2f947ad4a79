"""A training loader that resumes mid-epoch exactly where a checkpoint left it.

Lightning saves the ``state_dict()`` of any stateful training loader in the checkpoint and hands it
back on ``--ckpt_path``. Ours records the epoch and how many batches training actually consumed
(counted when a batch reaches the model, not when the loader prefetches it), so a resumed run sees
the same batches in the same order as an uninterrupted one.

The sampler is a :class:`~torch.utils.data.DistributedSampler`, so under DDP Lightning keeps it as
it is, and every rank reads its own shard of the same seeded permutation.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class ResumableSampler(DistributedSampler):
    """Seeded, per-epoch shuffled sampler that can skip the batches a checkpoint already consumed.

    Args:
        dataset: the map-style dataset.
        batch_size: batch size of the loader, used to turn consumed batches into skipped indices.
        shuffle: shuffle every epoch with ``seed + epoch``.
        seed: the shuffle seed, identical on every rank.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = True, seed: int = 0) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=shuffle,
            seed=seed,
        )
        self.batch_size = batch_size
        self.skip_batches = 0
        self.consumed_batches = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.skip_batches = 0
        super().set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self.skip_batches = self.skip_batches, 0
        self.consumed_batches = skip
        return iter(indices[skip * self.batch_size:])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` that Lightning checkpoints and restores."""

    sampler: ResumableSampler

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.sampler.epoch, "consumed_batches": self.sampler.consumed_batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.epoch = int(state["epoch"])
        self.sampler.skip_batches = int(state["consumed_batches"])

    def mark_consumed(self) -> None:
        """Call once per batch that reached the training step."""
        self.sampler.consumed_batches += 1
