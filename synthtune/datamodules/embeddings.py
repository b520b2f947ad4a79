"""Synthetic and real JSONL → cached sentence embeddings, as minibatch pairs (fit) and synthetic ids (predict).

Any JSONL with a text field works on either side, so MMD weights can be learned for the output of
any generator (SynAlign, SoftSRV, ...). Embeddings come from
:func:`synthtune.components.encoders.featurize` (cached on disk) with the featuriser named by
``backbone`` (``minilm`` by default, or any causal LM), or from ``.npy`` files given explicitly.

Training batches pair ``batch_syn`` synthetic rows (a seeded, resumable shuffle of the synthetic
set) with ``batch_real`` real rows drawn with a seed derived from the synthetic rows, so a run
resumed mid-epoch sees exactly the pairs an uninterrupted run would.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from synthtune.components.encoders import DEFAULT_FEATURIZER, featurize
from synthtune.contract import EmbeddingData
from synthtune.datamodules.base import ListDataset, SynthtuneDataModule
from synthtune.errors import SynthtuneError
from synthtune.records import read_records, require_fields
from synthtune.registry import datamodule


def _load_npy(path: str, rows: int, what: str) -> torch.Tensor:
    try:
        array = np.load(Path(path).expanduser(), allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SynthtuneError(f"cannot read {what} embeddings {path} ({exc}); pass a .npy file of shape [rows, dim]") from None
    if array.ndim != 2 or array.shape[0] != rows:
        raise SynthtuneError(f"{what} embeddings {path} have shape {array.shape} but the {what} file has {rows} rows; "
                             f"save one embedding per row")
    return torch.from_numpy(np.asarray(array, dtype=np.float32))


@datamodule
class EmbeddingDataModule(SynthtuneDataModule):
    """Synthetic and real rows with their embeddings, for :class:`~synthtune.lightning_modules.mmd_weight.MMDWeightModule`.

    Args:
        synthetic: JSONL of synthetic rows (e.g. ``samples.jsonl`` of a generation run).
        real: JSONL of real rows (e.g. the demonstrations, or any real sample).
        backbone: the embedder: ``minilm`` or a causal LM name/folder (linked from the model by the CLI).
        text_field: text field of the synthetic rows.
        real_text_field: text field of the real rows (default: ``text_field``).
        synthetic_embeddings: optional ``.npy`` [rows, dim] used instead of embedding the synthetic texts.
        real_embeddings: optional ``.npy`` [rows, dim] used instead of embedding the real texts.
        batch_syn: synthetic rows per training minibatch.
        batch_real: real rows per training minibatch.
        predict_batch_size: synthetic rows per predict batch.
        seed: seed of the shuffles and real draws.
        cache: cache embeddings on disk.
    """

    def __init__(
        self,
        synthetic: str,
        real: str,
        backbone: str = DEFAULT_FEATURIZER,
        text_field: str = "text",
        real_text_field: str | None = None,
        synthetic_embeddings: str | None = None,
        real_embeddings: str | None = None,
        batch_syn: int = 1024,
        batch_real: int = 1024,
        predict_batch_size: int = 4096,
        seed: int = 0,
        cache: bool = True,
    ) -> None:
        super().__init__()
        if min(batch_syn, batch_real, predict_batch_size) < 1:
            raise SynthtuneError("batch_syn, batch_real and predict_batch_size must all be >= 1")
        self.synthetic, self.real, self.backbone = synthetic, real, backbone
        self.text_field, self.real_text_field = text_field, real_text_field or text_field
        self.synthetic_embeddings_path, self.real_embeddings_path = synthetic_embeddings, real_embeddings
        self.batch_syn, self.batch_real, self.predict_batch_size = batch_syn, batch_real, predict_batch_size
        self.seed, self.cache = seed, cache
        self.synthetic_rows: list[dict[str, Any]] = []
        self.real_rows: list[dict[str, Any]] = []
        self.syn_emb: torch.Tensor | None = None
        self.real_emb: torch.Tensor | None = None

    # ------------------------------------------------------------------ data
    def _rows(self, path: str, field: str, what: str) -> list[dict[str, Any]]:
        if not Path(path).expanduser().is_file():
            raise SynthtuneError(f"{what} file not found: {path}; run the step that writes it first (see docs/synalign.md) "
                                 f"or point --data.init_args.{'synthetic' if what == 'synthetic' else 'real'} at a JSONL with a text field")
        rows = read_records(path)
        if not rows:
            raise SynthtuneError(f"{path}: the {what} file has no rows; check the path")
        require_fields(rows, [field], str(path))
        return rows

    def _embed(self, rows: list[dict[str, Any]], field: str, npy: str | None, what: str) -> torch.Tensor:
        if npy:
            emb = _load_npy(npy, len(rows), what)
        else:
            emb = torch.from_numpy(featurize([str(r[field]) for r in rows], self.backbone, cache=self.cache))
        if not torch.isfinite(emb).all():
            raise SynthtuneError(f"the {what} embeddings contain NaN or inf; re-embed the texts or drop those rows")
        return emb.float()

    def setup(self, stage: str | None = None) -> None:
        if self.syn_emb is not None:
            return
        self.synthetic_rows = self._rows(self.synthetic, self.text_field, "synthetic")
        self.real_rows = self._rows(self.real, self.real_text_field, "real")
        syn = self._embed(self.synthetic_rows, self.text_field, self.synthetic_embeddings_path, "synthetic")
        real = self._embed(self.real_rows, self.real_text_field, self.real_embeddings_path, "real")
        if syn.shape[1] != real.shape[1]:
            raise SynthtuneError(f"synthetic embeddings have dimension {syn.shape[1]} but real ones {real.shape[1]}; "
                                 f"embed both sets with the same encoder")
        self.syn_emb, self.real_emb = syn, real

    def describe(self) -> EmbeddingData:
        return EmbeddingData(source=str(self.synthetic), synthetic_rows=tuple(self.synthetic_rows),
                        real_rows=tuple(self.real_rows), synthetic_embeddings=self.syn_emb,
                        real_embeddings=self.real_emb)

    @property
    def dim(self) -> int:
        if self.syn_emb is None:
            raise SynthtuneError("EmbeddingDataModule.setup() has not run yet")
        return int(self.syn_emb.shape[1])

    # --------------------------------------------------------------- batches
    def real_indices(self, syn_index: torch.Tensor) -> torch.Tensor:
        """Real rows paired with a synthetic minibatch: all of them if few, else a draw seeded by the batch."""
        m = self.real_emb.shape[0]
        if m <= self.batch_real:
            return torch.arange(m)
        key = zlib.crc32(syn_index.numpy().astype(np.int64).tobytes()) ^ (self.seed * 0x9E3779B1 & 0xFFFFFFFF)
        gen = torch.Generator().manual_seed(key)
        return torch.randperm(m, generator=gen)[: self.batch_real]

    def collate_train(self, items: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(items)
        real_index = self.real_indices(index)
        return {"index": index, "syn": self.syn_emb[index], "real_index": real_index, "real": self.real_emb[real_index]}

    def train_dataloader(self) -> DataLoader:
        dataset = ListDataset(range(self.syn_emb.shape[0]))
        batch = min(self.batch_syn, len(dataset))
        return self.resumable_loader(dataset, batch, self.collate_train, self.seed)


    # ------------------------------------------------------------- predict

    def collate_predict(self, items: list[int]) -> dict[str, torch.Tensor]:
        index = torch.tensor(items)
        return {"id": index, "emb": self.syn_emb[index]}

    def predict_dataloader(self) -> DataLoader:
        pending = [i for i in range(self.syn_emb.shape[0]) if i not in self._skip]
        # With every row already written, still run one batch (its rows are dropped by the writer) so
        # the module's end-of-predict resampling runs again.
        return DataLoader(pending or [0], batch_size=self.predict_batch_size, shuffle=False,
                          collate_fn=self.collate_predict)
