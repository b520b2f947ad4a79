import json
from functools import partial

import pytest
import torch
from lightning.pytorch.callbacks import Callback

import helpers
from synthtune.callbacks import JsonlPredictionWriter
from synthtune.callbacks.jsonl_writer import is_repetition_loop
from synthtune.components.softsrv.prefix_lm import prefix_token_logprobs
from synthtune.datamodules import TextDataModule
from synthtune.errors import NonFiniteLossError, SynthtuneError
from synthtune.lightning_modules import SoftSRVModule
from synthtune.lightning_modules import softsrv as softsrv_mod

ROWS = [{"question": f"Tom has {i} apples and buys {i + 2} more. How many now?"} for i in range(24)]


class LossRecorder(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


class StopAfter(Callback):
    """Simulates a crash: raises after ``n`` predict batches were written."""

    def __init__(self, n):
        self.n = n

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx + 1 >= self.n:
            raise RuntimeError("simulated crash")


@pytest.fixture()
def data_path(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return str(path)


def make(tiny, data_path, parameterization="mc", num_samples=10, **kw):
    module = SoftSRVModule(backbone=tiny, parameterization=parameterization, prompt_length=4, mlp_hidden=8,
                           lr=1e-2, max_new_tokens=6, **kw)
    dm = TextDataModule(data_path, "{question}", backbone=tiny, batch_size=4, num_samples=num_samples)
    return module, dm


trainer = partial(helpers.trainer, max_steps=4, every=2)


@pytest.mark.parametrize("parameterization", ["np", "mp", "mc"])
def test_fit_trains_the_prompt_only_and_checkpoints_stay_small(tiny_llama, data_path, tmp_path, parameterization):
    module, dm = make(tiny_llama, data_path, parameterization)
    frozen = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    prompt_before = [p.detach().clone() for p in module.soft_prompt.parameters()]
    rec = LossRecorder()
    trainer(tmp_path, max_steps=6, callbacks=[rec]).fit(module, dm)
    assert all(torch.equal(v, module.backbone.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(a, b) for a, b in zip(prompt_before, module.soft_prompt.parameters()))
    assert rec.losses[-1] < rec.losses[0]
    ckpt_path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert not any(k.startswith("backbone.") for k in ckpt["state_dict"])
    assert ckpt["synthtune"]["parameterization"] == parameterization
    trainable_bytes = sum(p.numel() * 4 for p in module.soft_prompt.parameters())
    backbone_bytes = sum(p.numel() * 4 for p in module.backbone.parameters())
    # weights + two Adam moments + loop state; never the backbone
    assert ckpt_path.stat().st_size < 3 * trainable_bytes + 64_000 < backbone_bytes + 3 * trainable_bytes


def test_interrupted_and_resumed_fit_gives_the_same_losses(tiny_llama, data_path, tmp_path):
    full = LossRecorder()
    module, dm = make(tiny_llama, data_path)
    trainer(tmp_path / "full", max_steps=9, every=5, callbacks=[full]).fit(module, dm)

    first = LossRecorder()
    module, dm = make(tiny_llama, data_path)
    trainer(tmp_path / "cut", max_steps=5, every=5, callbacks=[first]).fit(module, dm)  # stops mid-epoch 0
    second = LossRecorder()
    module, dm = make(tiny_llama, data_path)
    trainer(tmp_path / "cut", max_steps=9, every=5, callbacks=[second]).fit(
        module, dm, ckpt_path=str(tmp_path / "cut" / "checkpoints" / "last.ckpt"))
    assert len(first.losses) == 5 and len(second.losses) == 4
    assert first.losses + second.losses == pytest.approx(full.losses, rel=1e-5)


def test_mismatched_checkpoint_is_refused_with_one_line(tiny_llama, data_path, tmp_path):
    module, dm = make(tiny_llama, data_path, "np")
    trainer(tmp_path, max_steps=2).fit(module, dm)
    other, dm = make(tiny_llama, data_path, "mc")
    with pytest.raises(SynthtuneError, match=r"parameterization='np' \(this run: 'mc'\)"):
        trainer(tmp_path / "p").predict(other, dm, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_llama, data_path, tmp_path, monkeypatch):
    module, dm = make(tiny_llama, data_path)
    real = softsrv_mod.reconstruction_loss
    calls = {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        loss = real(*args)
        return loss * float("nan") if calls["n"] == 3 else loss

    monkeypatch.setattr(softsrv_mod, "reconstruction_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="loss is nan at step 2"):
        trainer(tmp_path, max_steps=6, every=2).fit(module, dm)
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 2
    assert last["state_dict"] and all(torch.isfinite(v).all() for v in last["state_dict"].values())


def test_predict_resume_finishes_the_file_without_duplicates(tiny_llama, data_path, tmp_path):
    module, dm = make(tiny_llama, data_path, num_samples=10)
    trainer(tmp_path, max_steps=2).fit(module, dm)
    ckpt = str(tmp_path / "checkpoints" / "last.ckpt")

    reference = tmp_path / "reference.jsonl"
    module, dm = make(tiny_llama, data_path, num_samples=10)
    trainer(tmp_path, callbacks=[JsonlPredictionWriter(str(reference))]).predict(
        module, dm, ckpt_path=ckpt, return_predictions=False)

    out = tmp_path / "samples.jsonl"
    module, dm = make(tiny_llama, data_path, num_samples=10)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer(tmp_path, callbacks=[JsonlPredictionWriter(str(out)), StopAfter(2)]).predict(
            module, dm, ckpt_path=ckpt, return_predictions=False)
    module, dm = make(tiny_llama, data_path, num_samples=10)
    trainer(tmp_path, callbacks=[JsonlPredictionWriter(str(out))]).predict(
        module, dm, ckpt_path=ckpt, return_predictions=False)

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(10))
    expected = [json.loads(line) for line in reference.read_text().splitlines()]
    assert [r["text"] for r in rows] == [r["text"] for r in expected]  # resumed samples are the same samples
    assert rows[7]["context_index"] == 7 % len(dm.train_texts)
    assert rows[0]["method"] == "softsrv" and rows[0]["params"]["checkpoint"] != "untrained"


def test_predict_counts_samples_cut_off_at_the_length_cap(tiny_llama, data_path, tmp_path, caplog):
    out = tmp_path / "samples.jsonl"
    # The tiny random model rarely emits EOS within its 6-token cap, so most rows are cut off; the summary
    # must agree with the rows' own flags.
    module, dm = make(tiny_llama, data_path, num_samples=12)
    with caplog.at_level("INFO", logger="synthtune.callbacks.jsonl_writer"):
        trainer(tmp_path, callbacks=[JsonlPredictionWriter(str(out))]).predict(module, dm, return_predictions=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 12 and all(isinstance(r["hit_cap"], bool) for r in rows)
    capped = sum(r["hit_cap"] for r in rows)
    summary = json.loads((tmp_path / "samples.jsonl.summary.json").read_text())
    loops = sum(is_repetition_loop(r["text"]) for r in rows if r["hit_cap"])
    assert summary == {"samples": 12, "ended_at_eos": 12 - capped, "hit_cap": capped,
                       "hit_cap_fraction": capped / 12, "repetition_loops": loops, "max_new_tokens": 6}
    assert capped > 12 * 0.05 and "raise --model.init_args.max_new_tokens" in caplog.text


def test_softsrv_rows_change_and_record_the_penalty(tiny_llama, data_path, tmp_path):
    texts = {}
    for penalty in (1.0, 0.1):  # below 1 the penalty favours repeats, which the tiny model never draws alone
        out = tmp_path / f"p{penalty}.jsonl"
        module, dm = make(tiny_llama, data_path, num_samples=6, repetition_penalty=penalty)
        trainer(tmp_path, callbacks=[JsonlPredictionWriter(str(out))]).predict(module, dm, return_predictions=False)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        texts[penalty] = [r["text"] for r in rows]
        assert rows[0]["params"].get("repetition_penalty") == (None if penalty == 1.0 else penalty)
    assert texts[0.1] != texts[1.0]


def per_example_losses(module, texts, prefix):
    """Mean next-token NLL of each text given its own prefix row: [n]."""
    enc = module.tokenizer(list(texts), return_tensors="pt", padding=True)
    logprobs = prefix_token_logprobs(module.backbone, prefix, enc["input_ids"], enc["attention_mask"])
    return -logprobs.sum(1) / enc["attention_mask"].sum(1)


@pytest.mark.parametrize("parameterization, varies", [("mc", True), ("mp", True), ("np", False)])
def test_a_trained_prompt_varies_with_the_context(tiny_llama, data_path, tmp_path, parameterization, varies):
    """SS_MC / SS_MPk must not collapse to SS_NP: different contexts give measurably different prompts and
    different reconstruction losses (SS_NP, the control, gives exactly one prompt)."""
    module, dm = make(tiny_llama, data_path, parameterization)
    trainer(tmp_path, max_steps=6).fit(module, dm)
    n = len(dm.train_texts)
    with torch.no_grad():
        prompts = module.prompts(torch.arange(n))
        center = prompts.mean(0)
        spread = ((prompts - center).norm(dim=(1, 2)).mean() / center.norm()).item()
        own = per_example_losses(module, dm.train_texts, prompts)
        swapped = per_example_losses(module, dm.train_texts, prompts.roll(1, dims=0))  # x_i read with P(z_{i-1})
    gap = (own - swapped).abs().max().item()
    if varies:
        assert spread > 0.05, spread
        assert gap > 1e-4, gap
        assert (own - swapped).abs().gt(1e-6).sum().item() >= n // 2
    else:
        assert spread < 1e-6 and gap == 0.0


def test_z_is_standardised_with_training_statistics_that_travel_in_the_checkpoint(tiny_llama, data_path, tmp_path):
    module, dm = make(tiny_llama, data_path, "mc")
    trainer(tmp_path, max_steps=2).fit(module, dm)
    raw = module._contexts["train"].double()
    torch.testing.assert_close(module.context_norm.mean, raw.mean(0).float())
    torch.testing.assert_close(module.context_norm.std, raw.std(0, unbiased=False).float())
    z = module.context_norm(module._contexts["train"])
    assert z.mean(0).abs().max().item() < 1e-4 and (z.std(0, unbiased=False) - 1).abs().max().item() < 1e-3
    # The prompt reads the standardised z.
    index = torch.tensor([0, 3])
    torch.testing.assert_close(module.prompts(index), module.soft_prompt(z[index]))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    torch.testing.assert_close(ckpt["state_dict"]["context_norm.mean"], module.context_norm.mean)
    assert ckpt["synthtune"]["context_encoder"] == "lm_hidden"

    # Predicting from other data keeps the training statistics from the checkpoint.
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"question": f"A train leaves at {i} pm going {9 * i} mph."}) + "\n"
                             for i in range(1, 9)))
    fresh, dm = make(tiny_llama, str(other), "mc", num_samples=2)
    trainer(tmp_path / "p").predict(fresh, dm, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"))
    assert not torch.allclose(fresh._contexts["train"].mean(0), module.context_norm.mean, atol=1e-3)
    torch.testing.assert_close(fresh.context_norm.mean, module.context_norm.mean)
    torch.testing.assert_close(fresh.context_norm.std, module.context_norm.std)


def test_backbone_is_the_old_name_of_the_static_encoder(tiny_llama, caplog):
    old = SoftSRVModule(backbone=tiny_llama, prompt_length=2, mlp_hidden=4, context_encoder="backbone")
    new = SoftSRVModule(backbone=tiny_llama, prompt_length=2, mlp_hidden=4, context_encoder="lm_static")
    assert old.checkpoint_signature() == new.checkpoint_signature()
    assert old.checkpoint_signature()["context_encoder"] == "lm_static"
    assert caplog.text.count("context_encoder: backbone is deprecated") == 1
