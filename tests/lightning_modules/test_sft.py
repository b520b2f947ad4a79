import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from synthtune.components.backbone import load_backbone
from synthtune.datamodules.qa import QADataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.sft import SFTModule

ROWS = [{"question": f"Tom has {i} apples and buys 2 more. How many now?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}
        for i in range(8)]


class LossRecorder(Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return str(path)


def fit(module, dm, root, steps=12):
    rec = LossRecorder()
    ckpt = ModelCheckpoint(dirpath=str(Path(root) / "checkpoints"), save_last=True)
    trainer = pl.Trainer(default_root_dir=str(root), max_steps=steps, accelerator="cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[rec, ckpt])
    trainer.fit(module, dm)
    return rec.losses, torch.load(Path(root) / "checkpoints" / "last.ckpt", weights_only=False)


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_loss_falls(tiny_llama, data, tmp_path, finetune):
    pl.seed_everything(0)
    # LoRA (rank 4 on q/v of a random hidden-32 model) moves the loss less than full fine-tuning
    lr, drop = (3e-3, 0.3) if finetune == "full" else (5e-2, 0.08)
    module = SFTModule(backbone=tiny_llama, finetune=finetune, lr=lr, lora_r=4)
    losses, _ = fit(module, QADataModule(data, backbone=tiny_llama, batch_size=8), tmp_path, steps=12)
    assert sum(losses[-3:]) / 3 < losses[0] - drop
    assert losses[-1] < losses[len(losses) // 2] < losses[0]


def test_lora_checkpoint_holds_only_adapters_and_reloads(tiny_llama, data, tmp_path):
    module = SFTModule(backbone=tiny_llama, finetune="lora", lr=2e-2, lora_r=4)
    base = {k: v.clone() for k, v in module.model.state_dict().items() if "lora_" not in k}
    _, ckpt = fit(module, QADataModule(data, backbone=tiny_llama, batch_size=4), tmp_path, steps=3)
    keys = set(ckpt["state_dict"])
    assert keys and all("lora_A" in k or "lora_B" in k for k in keys)
    assert {k.split(".")[-4] for k in keys} == {"q_proj", "v_proj"}  # peft's Llama default targets
    assert ckpt["synthtune"] == {"method": "sft", "backbone": tiny_llama, "finetune": "lora", "lora_r": 4,
                                 "lora_targets": ["q_proj", "v_proj"]}
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in base.items())  # base weights frozen
    # the shared frozen backbone of this model is untouched by fine-tuning
    shared = load_backbone(tiny_llama).model
    assert not any("lora_" in name for name, _ in shared.named_parameters())
    fresh = SFTModule(backbone=tiny_llama, finetune="lora", lora_r=4)
    fresh.on_load_checkpoint(ckpt)
    fresh.load_state_dict(ckpt["state_dict"], strict=False)
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(fresh.state_dict()[k], v)


def test_full_checkpoint_holds_the_whole_model(tiny_llama, data, tmp_path):
    module = SFTModule(backbone=tiny_llama, finetune="full", lr=1e-3)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    _, ckpt = fit(module, QADataModule(data, backbone=tiny_llama, batch_size=4), tmp_path, steps=2)
    assert set(ckpt["state_dict"]) == set(module.state_dict())
    assert not torch.equal(ckpt["state_dict"]["model.model.layers.0.self_attn.q_proj.weight"],
                           before["model.layers.0.self_attn.q_proj.weight"])
    shared = load_backbone(tiny_llama).model  # the process-wide frozen copy did not train
    assert torch.equal(shared.state_dict()["model.layers.0.self_attn.q_proj.weight"],
                       before["model.layers.0.self_attn.q_proj.weight"])
    assert module.strict_loading is True


def test_checkpoint_of_another_setup_is_refused(tiny_llama, data, tmp_path):
    module = SFTModule(backbone=tiny_llama, finetune="lora", lora_r=4)
    _, ckpt = fit(module, QADataModule(data, backbone=tiny_llama, batch_size=4), tmp_path, steps=1)
    with pytest.raises(SynthtuneError, match="finetune='lora'"):
        SFTModule(backbone=tiny_llama, finetune="full").on_load_checkpoint(ckpt)
    with pytest.raises(SynthtuneError, match="lora_r=4"):
        SFTModule(backbone=tiny_llama, finetune="lora", lora_r=8).on_load_checkpoint(ckpt)


def test_test_reports_exact_match_and_writes_predictions(tiny_llama, data, tmp_path, monkeypatch):
    module = SFTModule(backbone=tiny_llama, finetune="lora", max_new_tokens=4)
    # a stand-in for greedy decoding: right on even apples, wrong on odd ones
    replies = {f"Tom has {i} apples": (f"so #### {i + 2}" if i % 2 == 0 else "#### 0") for i in range(8)}
    monkeypatch.setattr(module, "complete", lambda prompts, chat: ([replies[p.split(" and")[0][10:]] for p in prompts],
                                                                   [r == "#### 0" for r in map(lambda p: replies[p.split(" and")[0][10:]], prompts)]))
    dm = QADataModule(data, backbone=tiny_llama, test_path=data, test_limit=6, batch_size=4)
    trainer = pl.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    result = trainer.test(module, dm, verbose=False)
    assert result[0]["test/exact_match"] == pytest.approx(3 / 6)  # batches of 4 and 2, weighted by size
    rows = [json.loads(line) for line in (tmp_path / "test_predictions.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in rows] == [True, False, True, False, True, False]
    assert rows[1]["predicted"] == "0" and rows[1]["gold"] == "3"
    assert [r["hit_cap"] for r in rows] == [False, True, False, True, False, True]


def test_greedy_completion_runs_on_the_model(tiny_llama):
    module = SFTModule(backbone=tiny_llama, finetune="lora", max_new_tokens=5)
    module.eval()
    (a, capped), (b, _) = (module.complete(["Question: Tom has 3 apples.\nAnswer:", "Question: x\nAnswer:"], False),
                           module.complete(["Question: Tom has 3 apples.\nAnswer:"], False))
    assert len(a) == 2 and a[0] == b[0] and len(capped) == 2


def test_bad_settings(tiny_llama):
    with pytest.raises(SynthtuneError, match="match no layer"):
        SFTModule(backbone=tiny_llama, finetune="lora", lora_target_modules=["c_attn"])
    with pytest.raises(SynthtuneError, match="finetune must be"):
        SFTModule(backbone=tiny_llama, finetune="qlora")
    with pytest.raises(SynthtuneError, match="lora_r"):
        SFTModule(backbone=tiny_llama, lora_r=0)
