"""Fixed labelled training and test rows for :class:`~synthtune.lightning_modules.prompt_tuning.PromptTuningModule`.

``synthtune synalign evaluate --classifier prompt_tuning`` trains one soft prompt per training set
(real only, synthetic only, real + synthetic, ...). Those sets are built in memory from the files the
command reads, so this datamodule takes the rows themselves instead of a k-shot split: all training
rows are batched as one source (strategy ``real``), there is no dev set, and the test rows are scored
once by ``trainer.test``. Batching, collation and the model–data contract are
:class:`~synthtune.datamodules.fewshot.FewShotDataModule`'s.
"""

from __future__ import annotations

from typing import Any

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.datamodules.fewshot import FewShotDataModule
from synthtune.registry import datamodule


@datamodule
class GivenRowsDataModule(FewShotDataModule):
    """Labelled rows given in memory, trained on as one set and tested on ``test_rows``.

    Args:
        task: task name or folder (label names and text fields).
        train_rows: rows with the task's text fields and an integer ``label``.
        test_rows: rows scored by ``trainer.test``.
        backbone: the model's backbone (recorded only; the model tokenises).
        seed: seed of the batch plan.
        batch_size: training rows per batch.
        eval_batch_size: test rows per batch.
        label_names: the label names in index order (rows of your own, whose task has no folder).
    """

    def __init__(self, task: str, train_rows: list[dict[str, Any]], test_rows: list[dict[str, Any]],
                 backbone: str = DEFAULT_BACKBONE, seed: int = 0, batch_size: int = 8, eval_batch_size: int = 32,
                 label_names: list[str] | None = None) -> None:
        super().__init__(task=task, backbone=backbone, seed=seed, strategy="real", batch_size=batch_size,
                         eval_batch_size=eval_batch_size, label_names=label_names)
        self.given_train, self.given_test = list(train_rows), list(test_rows)

    def load_real(self) -> None:
        self.train_real, self.dev_rows = list(self.given_train), []

    def load_synthetic(self) -> None:
        self.train_syn = []

    def load_test(self) -> None:
        self.test_rows = list(self.given_test)
