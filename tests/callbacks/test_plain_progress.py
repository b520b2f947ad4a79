"""Progress lines when stdout is not a terminal: a fit or predict sent to a log file shows its progress (issue 28, item 4)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import Namespace

from synthtune.callbacks import PlainProgress
from synthtune.callbacks.plain_progress import clock
from synthtune.callbacks.progress import PLAIN_PROGRESS, RUN_PROGRESS_BAR, use_run_progress_bar
from synthtune.errors import SynthtuneError

REPO = Path(__file__).resolve().parents[2]


class Regressor(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def predict_step(self, batch, batch_idx):
        return self.layer(batch[0])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def loader(n: int = 16, batch_size: int = 2):
    data = torch.utils.data.TensorDataset(torch.arange(n, dtype=torch.float32).unsqueeze(1))
    return torch.utils.data.DataLoader(data, batch_size=batch_size)


def trainer(progress: PlainProgress, max_steps: int = 25) -> pl.Trainer:
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_model_summary=False,
                      enable_checkpointing=False, enable_progress_bar=False, callbacks=[progress])


def test_fit_prints_a_line_every_n_steps_with_loss_rate_and_eta(capsys):
    trainer(PlainProgress(every_n_steps=10, every_seconds=3600)).fit(Regressor(), loader())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("fit:")]
    assert lines[0] == "fit: started, 25 steps"
    steps = [line.split(",")[0] for line in lines[1:-1]]
    assert steps == ["fit: step 1/25 (4 %)", "fit: step 11/25 (44 %)", "fit: step 21/25 (84 %)",
                     "fit: step 25/25 (100 %)"]
    assert all(" loss " in line and " steps/s" in line and "ETA " in line for line in lines[1:-1])
    assert lines[-1].startswith("fit: finished at step 25 in ")
    assert lines[-2].endswith("ETA 0:00")


def test_fit_prints_every_few_seconds_whatever_the_step_count(capsys, monkeypatch):
    ticks = iter(range(0, 10_000, 20))  # every read of the clock is 20 s after the one before
    monkeypatch.setattr("synthtune.callbacks.plain_progress._now", lambda: next(ticks))
    trainer(PlainProgress(every_n_steps=1000, every_seconds=30), max_steps=6).fit(Regressor(), loader())
    steps = [line.split(",")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("fit: step")]
    # the first step; then a step is due once 30 s passed since the last line (the clock is read when a step
    # checks and when a line is printed, so every second step), and the last step
    assert steps == ["fit: step 1/6 (17 %)", "fit: step 3/6 (50 %)", "fit: step 5/6 (83 %)", "fit: step 6/6 (100 %)"]


def test_predict_counts_samples_with_rate_and_eta(capsys):
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
               callbacks=[PlainProgress(every_n_steps=3, every_seconds=3600)]).predict(Regressor(), loader(10, 4))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("predict:")]
    assert lines[0] == "predict: started, 10 samples"
    assert [line.split(",")[0] for line in lines[1:]] == ["predict: 4/10 samples (40 %)",
                                                          "predict: 10/10 samples (100 %)"]
    assert "samples/s" in lines[-1] and lines[-1].endswith("ETA 0:00")


def test_silent_in_a_terminal_unless_always(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    trainer(PlainProgress(), max_steps=3).fit(Regressor(), loader())
    assert "fit:" not in capsys.readouterr().out
    trainer(PlainProgress(always=True), max_steps=3).fit(Regressor(), loader())
    assert "fit: step 3/3 (100 %)" in capsys.readouterr().out


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(SynthtuneError, match="every_n_steps must be at least 1"):
        PlainProgress(every_n_steps=0)
    with pytest.raises(SynthtuneError, match="every_seconds must be positive"):
        PlainProgress(every_seconds=0)


def test_clock():
    assert [clock(5), clock(65), clock(3725), clock(float("nan"))] == ["0:05", "1:05", "1:02:05", "?"]


def test_added_by_default_whatever_the_terminal_and_only_once():
    names = [c.class_path for c in use_run_progress_bar(None, None)]
    assert names == [RUN_PROGRESS_BAR, PLAIN_PROGRESS]
    named = [Namespace(class_path=PLAIN_PROGRESS, init_args=Namespace(every_n_steps=5))]
    assert [c.class_path for c in use_run_progress_bar(named, True)] == [PLAIN_PROGRESS, RUN_PROGRESS_BAR]
    assert use_run_progress_bar(None, False) == []


def test_a_fit_sent_to_a_file_shows_its_progress_in_the_file(tiny_llama, tmp_path):
    """The issue's check: ``synthtune fit ... > log`` (stdout a file, not a terminal) writes progress lines."""
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"question": f"Sam has {i} pens. How many?"}) + "\n" for i in range(16)))
    args = ["fit", "--config", str(REPO / "configs/softsrv/demo.yaml"), "--model.init_args.backbone", tiny_llama,
            "--model.init_args.prompt_length", "4", "--model.init_args.max_new_tokens", "5",
            "--data.init_args.path", str(data), "--data.init_args.limit", "null", "--data.init_args.batch_size", "4",
            "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.logger", "false",
            "--trainer.max_steps", "12", "--trainer.callbacks", "[{class_path: lightning.pytorch.callbacks.RichProgressBar}]"]
    log = tmp_path / "fit.log"
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "-m", "synthtune.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300, cwd=tmp_path)
    text = log.read_text()
    assert done.returncode == 0, text[-2000:]
    assert "fit: started, 12 steps" in text
    assert "fit: step 11/12 (92 %), loss " in text and "fit: step 12/12 (100 %), loss " in text
    assert "class_path: synthtune.callbacks.PlainProgress" in (tmp_path / "run" / "config.yaml").read_text()


class SampledRegressor(Regressor):
    """A predict step that reports its rows one by one as they end, as the sampler does (progress.advance)."""

    def predict_step(self, batch, batch_idx):
        from synthtune.components import progress

        for _ in range(len(batch[0])):
            progress.advance(1)
        return self.layer(batch[0])


def test_predict_counts_each_sample_as_it_ends_inside_one_batch(capsys):
    """48 samples decoded as one batch no longer sit at 0/48 until the batch ends (issue 32, item 7)."""
    pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
               callbacks=[PlainProgress(every_n_steps=10, every_seconds=3600)]).predict(SampledRegressor(),
                                                                                        loader(48, 48))
    lines = [line.split(",")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("predict:")]
    assert lines == ["predict: started", "predict: 1/48 samples (2 %)", "predict: 11/48 samples (23 %)",
                     "predict: 21/48 samples (44 %)", "predict: 31/48 samples (65 %)",
                     "predict: 41/48 samples (85 %)", "predict: 48/48 samples (100 %)"]


def test_the_sampler_reports_every_sample_that_ends(tiny_llama):
    from synthtune.components import progress
    from synthtune.components.backbone import load_backbone
    from synthtune.components.sampling import sample_from_prefix

    bb = load_backbone(tiny_llama)
    seen = []
    with progress.listening(seen.append):
        out = sample_from_prefix(bb.model, torch.randn(5, 2, bb.hidden_size), list(range(5)), [3, 5, 4, 6, 2],
                                 eos_token_ids=[], batch_size=2)
    assert sum(seen) == 5 and [len(x) for x in out] == [3, 5, 4, 6, 2]
