import logging
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from synthtune.callbacks import SampleLogger
from synthtune.callbacks.sample_logger import format_markdown, truncate
from synthtune.errors import SynthtuneError


class ToyTrainee(pl.LightningModule):
    """A one-weight regression whose sample_texts switches to eval mode and draws random numbers."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.calls: list[tuple[int, int]] = []
        self.train_mode_seen: list[bool] = []

    def training_step(self, batch, batch_idx):
        self.train_mode_seen.append(self.training)
        (x,) = batch
        return (self.layer(x) - 2 * x).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(64, 1)), batch_size=2)

    def sample_texts(self, num: int) -> list[str]:
        self.eval()
        self.calls.append((self.global_step, num))
        noise = torch.rand(1).item()  # consumes the global RNG
        return [f"text{k} at step {self.global_step} noise {noise:.3f} " + "x" * 400 for k in range(num)]


class NoSamples(ToyTrainee):
    sample_texts = None


def fit(root: Path, module: pl.LightningModule, callback: SampleLogger, logger, max_steps: int, **kw) -> None:
    pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        default_root_dir=str(root),
        callbacks=[callback],
        **kw,
    ).fit(module)


def test_logs_to_samples_log_at_every_nth_step_with_csv_logger(tmp_path, capsys):
    module, logger = ToyTrainee(), CSVLogger(str(tmp_path), name="csv")
    fit(tmp_path, module, SampleLogger(every_n_steps=3, num_samples=2, max_chars=40), logger, max_steps=7)

    assert module.calls == [(3, 2), (6, 2)]
    assert all(module.train_mode_seen)  # put back in train mode after sample_texts called eval()
    log_text = (Path(logger.log_dir) / "samples.log").read_text()
    assert log_text.count("=== step ") == 2
    assert "=== step 3 ===" in log_text and "=== step 6 ===" in log_text
    assert "text1 at step 6" in log_text and "x" * 400 in log_text  # the log keeps whole texts
    printed = capsys.readouterr().out
    assert "samples at step 3" in printed and "samples at step 6" in printed
    assert "x" * 41 not in printed and "…" in printed  # printed texts are cut to max_chars


def test_tensorboard_gets_text_summaries(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    module, logger = ToyTrainee(), TensorBoardLogger(str(tmp_path), name="tb")
    fit(tmp_path, module, SampleLogger(every_n_steps=2, num_samples=1), logger, max_steps=5)
    logger.experiment.flush()

    events = EventAccumulator(logger.log_dir, size_guidance={"tensors": 0})
    events.Reload()
    summaries = events.Tensors("samples/text_summary")
    assert [e.step for e in summaries] == [2, 4]
    text = summaries[1].tensor_proto.string_val[0].decode()
    assert "**step 4**" in text and "text0 at step 4" in text
    assert not (Path(logger.log_dir) / "samples.log").exists()


def test_gradient_accumulation_logs_each_step_once(tmp_path):
    module = ToyTrainee()
    fit(tmp_path, module, SampleLogger(every_n_steps=2, num_samples=1), False, max_steps=4, accumulate_grad_batches=3)
    assert module.calls == [(2, 1), (4, 1)]
    assert (tmp_path / "samples.log").read_text().count("=== step ") == 2  # no logger: default_root_dir


def test_module_without_sample_texts_warns_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        fit(tmp_path, NoSamples(), SampleLogger(every_n_steps=1), False, max_steps=4)
    warnings = [r for r in caplog.records if "no sample_texts" in r.getMessage()]
    assert len(warnings) == 1
    assert not (tmp_path / "samples.log").exists()


def test_sampling_does_not_change_the_training_random_stream():
    module = ToyTrainee()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    texts = SampleLogger(num_samples=2)._generate(module, module.sample_texts)
    assert len(texts) == 2 and module.training
    assert torch.equal(torch.rand(3), expected)


def test_eval_module_stays_in_eval():
    module = ToyTrainee().eval()
    SampleLogger()._generate(module, module.sample_texts)
    assert not module.training


@pytest.mark.parametrize("kwargs", [{"every_n_steps": 0}, {"num_samples": -1}, {"max_chars": 0}])
def test_bad_arguments_raise_one_line(kwargs):
    with pytest.raises(SynthtuneError, match="must be an integer >= 1"):
        SampleLogger(**kwargs)


def test_formatting_helpers():
    assert truncate("abcdef", 3) == "abc…" and truncate("abc", 3) == "abc"
    md = format_markdown(["has ``` fence", "plain"], 7)
    assert md.startswith("**step 7**") and "````\nhas ``` fence\n````" in md and "```\nplain\n```" in md
