"""Right-padding of token-id lists into a batch: the one place synthtune pads a batch on the right."""

from __future__ import annotations

from typing import Sequence

import torch


def right_pad(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, max_len]`` ids, each row followed by ``pad_id``, and the mask (1 on real tokens).

    ``max_len`` is the longest row (0 when every row is empty).
    """
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, :len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, :len(seq)] = 1
    return ids, mask
