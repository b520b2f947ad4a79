"""The training progress bar counts right under ``max_steps``, fresh and resumed mid-epoch (issue 15, item 10)."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from synthtune.callbacks import RunProgressBar
from synthtune.callbacks.progress import epoch_batch_total
from synthtune.datamodules.base import ListDataset, SynthtuneDataModule


class EightBatches(SynthtuneDataModule):
    """16 numbers in batches of 2, through the resumable loader every synthtune datamodule uses."""

    backbone = "unused"

    def train_dataloader(self):
        return self.resumable_loader(ListDataset([float(i) for i in range(16)]), 2, None, seed=0)


class Regressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch.float().unsqueeze(1)).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class RecordingBar(RunProgressBar):
    """Records what the training bar shows after every batch: (description, completed, total)."""

    def __init__(self) -> None:
        super().__init__()
        self.shown: list[tuple[str, int, int]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        task = self.progress.tasks[self.train_progress_bar_id]
        self.shown.append((task.description.split("]")[-1].strip(), int(task.completed), int(task.total)))


def fit(tmp_path, max_steps: int, ckpt_path=None) -> RecordingBar:
    bar = RecordingBar()
    every_step = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=1, save_last=True, save_top_k=0)
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_model_summary=False,
                         callbacks=[bar, every_step], default_root_dir=tmp_path)
    trainer.fit(Regressor(), datamodule=EightBatches(), ckpt_path=ckpt_path)
    return bar


def test_epoch_total_counts_from_the_resumed_batch():
    assert epoch_batch_total(8, 0, 11, 0) == 8
    assert epoch_batch_total(8, 0, 11, 8) == 3  # the second epoch stops after 3 batches
    assert epoch_batch_total(8, 5, 7, 5) == 7  # resumed at batch 5 with 2 steps left: the bar ends at 7/7
    assert epoch_batch_total(8, 0, -1, 3) == 8  # no max_steps: whole epochs


def test_fresh_fit_bounded_by_max_steps_shows_real_totals(tmp_path):
    bar = fit(tmp_path, max_steps=11)
    assert bar.shown[7] == ("Epoch 0", 8, 8)
    assert bar.shown[-1] == ("Epoch 1", 3, 3)  # Lightning's bar: "Epoch 1/-2"
    assert all("-" not in description for description, _, _ in bar.shown)


def test_resumed_fit_never_shows_more_done_than_total(tmp_path):
    fit(tmp_path, max_steps=5)
    bar = fit(tmp_path, max_steps=7, ckpt_path=tmp_path / "last.ckpt")
    # resumed at batch 5 of 8 with 2 steps left; Lightning's bar showed 6/2 and 7/2
    assert bar.shown == [("Epoch 0", 6, 7), ("Epoch 0", 7, 7)]


class OneByOne(Regressor):
    """A predict step that reports its rows one by one as they end, as the sampler does (progress.advance)."""

    def predict_step(self, batch, batch_idx):
        from synthtune.components import progress

        rows = batch[0]
        for _ in range(len(rows)):
            progress.advance(1)
            self.seen.append(self.bar_state())
        return self.layer(rows)


def test_the_predict_bar_counts_samples_as_they_end_inside_one_batch():
    """In a terminal the Rich bar counted predict in loader batches: 48 samples in one batch sat at 0/1 (issue 32)."""
    import io

    bar = RunProgressBar(console_kwargs={"force_terminal": True, "file": io.StringIO()})
    model = OneByOne()
    model.seen = []

    def bar_state():
        task = bar.progress.tasks[bar.predict_progress_bar_id]
        return int(task.completed), int(task.total)

    model.bar_state = bar_state
    data = torch.utils.data.TensorDataset(torch.arange(50, dtype=torch.float32).unsqueeze(1))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_model_summary=False, callbacks=[bar])
    trainer.predict(model, torch.utils.data.DataLoader(data, batch_size=48))
    assert model.seen[:3] == [(1, 50), (2, 50), (3, 50)] and model.seen[47] == (48, 50)
    assert model.seen[48:] == [(49, 50), (50, 50)]  # the second batch starts from the first one's 48
    task = bar.progress.tasks[bar.predict_progress_bar_id]
    assert (task.completed, task.total) == (50, 50)
