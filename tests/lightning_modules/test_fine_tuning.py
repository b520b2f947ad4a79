import json

import lightning.pytorch as pl
import pytest
import torch

from synthtune.components.backbone import load_backbone
from synthtune.datamodules.fewshot import FewShotDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.fine_tuning import FineTuningModule


@pytest.fixture()
def syn_file(tmp_path):
    (tmp_path / "syn.jsonl").write_text("".join(json.dumps({"text": f"film {i} was {'good' if i % 2 else 'bad'}",
                                                            "label": i % 2}) + "\n" for i in range(8)))
    return str(tmp_path / "syn.jsonl")


def data(backbone, strategy="real", synthetic=None):
    return FewShotDataModule("sst2", backbone=backbone, seed=13, strategy=strategy, synthetic=synthetic,
                             batch_size=4, test_limit=8)


def fit(module, dm, root, steps=2):
    t = pl.Trainer(default_root_dir=str(root), max_steps=steps, accelerator="cpu", devices=1, logger=False,
                   enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                   limit_val_batches=0)
    t.fit(module, dm)
    return t


@pytest.mark.parametrize("mode", ["head", "prompt"])
@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_fine_tuning_trains_every_weight_and_leaves_the_shared_backbone_alone(fixture, mode, request, tmp_path):
    backbone = request.getfixturevalue(fixture)
    shared = load_backbone(backbone).model
    shared_before = {k: v.clone() for k, v in shared.state_dict().items()}
    m = FineTuningModule(mode=mode, backbone=backbone, multi_token_labels=True, lr=1e-3)
    assert m.model is not shared and all(p.requires_grad for p in m.model.parameters())
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    t = fit(m, data(backbone), tmp_path)
    changed = [k for k, v in m.model.state_dict().items() if not torch.equal(v, before[k])]
    # The weights of every layer the forward pass uses move (not only a prompt or a head); T5's head
    # mode reads the encoder only, so its decoder stays as it was.
    used = [k for k in before if not (fixture == "tiny_t5" and mode == "head" and k.startswith(("decoder.", "lm_head")))
            and ("layers." in k or "block." in k) and k.endswith("weight")]
    assert used and all(k in changed for k in used)
    assert shared_before and all(torch.equal(v, shared.state_dict()[k]) for k, v in shared_before.items())
    result = t.test(m, data(backbone), verbose=False)[0]
    assert {"test/acc", "test/f1"} <= set(result)


def test_prompt_mode_reads_the_task_template_and_head_mode_the_raw_text(tiny_llama):
    prompt = FineTuningModule(mode="prompt", backbone=tiny_llama, multi_token_labels=True)
    dm = data(tiny_llama)
    dm.setup("fit")
    prompt.connect(dm.describe())
    assert prompt.reader.render({"text": "a film"}) == ("Movie review: a film\nQuestion: Is the sentiment of this "
                                                       "review positive or negative?\nAnswer: The sentiment is")
    head = FineTuningModule(mode="head", backbone=tiny_llama)
    head.connect(dm.describe())
    rows = [{"text": "a film"}, {"text": "a much longer film review"}]
    logits = head.class_logits(rows)
    assert logits.shape == (2, 2)
    # Right padding does not change a row's score: each row is read at its own last token.
    torch.testing.assert_close(head.class_logits(rows[:1]), logits[:1], rtol=1e-4, atol=1e-5)


def test_synthetic_only_fine_tuning_runs(tiny_llama, syn_file, tmp_path):
    m = FineTuningModule(mode="head", backbone=tiny_llama, lr=1e-3)
    head_before = m.head.weight.detach().clone()
    fit(m, data(tiny_llama, "syn", syn_file), tmp_path)
    assert not torch.equal(head_before, m.head.weight.detach())


def test_bad_settings_are_one_line(tiny_llama, syn_file, tmp_path):
    with pytest.raises(SynthtuneError, match="unknown mode"):
        FineTuningModule(mode="adapter", backbone=tiny_llama)
    with pytest.raises(SynthtuneError, match="prompt tuning's"):
        fit(FineTuningModule(mode="head", backbone=tiny_llama), data(tiny_llama, "paired", syn_file), tmp_path)
    with pytest.raises(SynthtuneError, match="num_labels 2"):
        fit(FineTuningModule(mode="head", backbone=tiny_llama, num_labels=3), data(tiny_llama), tmp_path)
