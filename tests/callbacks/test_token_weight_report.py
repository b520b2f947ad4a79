import lightning.pytorch as pl
import pytest
import torch

from synthtune.callbacks.token_weight_report import (REPORT_FILE, TokenWeightReport, accumulate_token_weights,
                                                      format_report, top_weighted_tokens)
from synthtune.errors import SynthtuneError

VOCAB = {1: "great", 2: "the", 3: "awful", 4: "film", 0: "<pad>"}


def test_tally_ranks_tokens_by_mean_weight_per_label_and_skips_pads():
    tally = {}
    weights = torch.tensor([[3.0, 0.5, 0.5, 9.0], [0.2, 2.0, 0.8, 0.0]])
    ids = torch.tensor([[1, 2, 4, 0], [2, 3, 4, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0]])
    accumulate_token_weights(tally, weights, ids, mask, torch.tensor([1, 0]), VOCAB.__getitem__)
    accumulate_token_weights(tally, torch.tensor([[1.0, 2.0]]), torch.tensor([[1, 2]]), torch.tensor([[1, 1]]),
                             torch.tensor([1]), VOCAB.__getitem__)
    top = top_weighted_tokens(tally, top_k=2)
    assert top[1] == [("great", 2.0, 2), ("the", 1.25, 2)]  # (3+1)/2 and (0.5+2)/2; the pad's 9.0 is ignored
    assert top[0][0] == ("awful", 2.0, 1)
    assert "<pad>" not in tally[1]
    assert top_weighted_tokens(tally, top_k=5, min_count=2)[1] == [("great", 2.0, 2), ("the", 1.25, 2)]
    text = format_report(top, ["negative", "positive"], step=7)
    assert "step 7" in text and "positive: 'great' 2.00 (x2)" in text and text.count("\n") == 3


def test_bad_arguments_are_refused():
    with pytest.raises(SynthtuneError, match="every_n_steps must be an integer >= 1"):
        TokenWeightReport(every_n_steps=0)


class _Tok:
    def decode(self, ids):
        return VOCAB[ids[0]]


class _FakeModule(pl.LightningModule):
    tokenizer = _Tok()


class _FakeTrainer:
    def __init__(self, root, step):
        self.global_step, self.is_global_zero, self.log_dir, self.default_root_dir = step, True, str(root), str(root)
        self.datamodule = type("DM", (), {"label_names": ("neg", "pos")})()


def test_callback_reports_every_n_steps_to_a_file(tmp_path):
    cb = TokenWeightReport(every_n_steps=2, top_k=1)
    batch = {"target_ids": torch.tensor([[1, 2]]), "target_mask": torch.tensor([[1, 1]]), "label": torch.tensor([1])}
    outputs = {"loss": torch.tensor(1.0), "token_weights": torch.tensor([[1.5, 0.5]])}
    cb.on_train_batch_end(_FakeTrainer(tmp_path, 1), _FakeModule(), outputs, batch, 0)
    assert not (tmp_path / REPORT_FILE).exists()
    cb.on_train_batch_end(_FakeTrainer(tmp_path, 2), _FakeModule(), outputs, batch, 1)
    assert cb.last_report == {1: [("great", 1.5, 2)]} and cb.tally == {}
    assert "pos: 'great' 1.50 (x2)" in (tmp_path / REPORT_FILE).read_text()
    cb.on_train_batch_end(_FakeTrainer(tmp_path, 3), _FakeModule(), torch.tensor(1.0), batch, 2)  # no weights: ignored
    assert cb.tally == {}
