"""The model–data contract: a datamodule's DataInfo reaches the model once, through one hand-over."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

from synthtune.contract import (ConnectData, DataInfo, EmbeddingData, FewShotData, LabeledData, PromptData, TextData,
                                check_kind, connect)
from synthtune.datamodules.labeled import LabeledDataModule
from synthtune.datamodules.prompts import PromptDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.base import SynthtuneModule
from synthtune.lightning_modules.dawgen import DawGenModule
from synthtune.lightning_modules.softsrv import SoftSRVModule


class Recorder(SynthtuneModule):
    """Writes three ids per predict item and records the order of the hooks it sees."""

    ids_per_item = 3

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.items: list[int] = []

    def connect(self, info: DataInfo) -> None:
        super().connect(info)
        self.events.append(f"connect:{getattr(info, 'has_questions', None)}")

    def setup(self, stage: str) -> None:
        self.events.append("setup:" + getattr(stage, "value", stage))

    def predict_step(self, batch, batch_idx):
        self.items += batch["index"].tolist()
        return []


def test_a_trainer_run_connects_before_setup_and_hands_ids_per_item_to_the_data(tiny_llama):
    dm = PromptDataModule(backbone=tiny_llama, num_requests=4)
    dm.skip_ids({0, 1, 7})  # a resumed run: ids 0-2 are item 0, id 7 belongs to item 2 (7 // 3)
    model = Recorder()
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    trainer.predict(model, dm, return_predictions=False)
    assert model.events == ["connect:False", "setup:predict"]
    assert dm.ids_per_item == 3 and model.items == [1, 3]
    assert sum(isinstance(cb, ConnectData) for cb in trainer.callbacks) == 1


def test_a_second_run_on_the_same_trainer_connects_again_without_an_override_notice(tiny_llama, caplog):
    dm = PromptDataModule(backbone=tiny_llama, num_requests=2)
    model = Recorder()
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    with caplog.at_level("INFO"):
        trainer.predict(model, dm, return_predictions=False)
        trainer.predict(model, dm, return_predictions=False)
    assert model.events == ["connect:False", "setup:predict"] * 2
    assert sum(isinstance(cb, ConnectData) for cb in trainer.callbacks) == 1
    assert "will override existing callbacks" not in caplog.text


def test_without_a_synthtune_datamodule_the_model_gets_a_bare_description(tiny_llama):
    model = Recorder()
    assert connect(model, None) == DataInfo() and model.data_info == DataInfo()
    with pytest.raises(SynthtuneError, match="^SoftSRVModule reads text data, but LightningDataModule describes none; "
                                             "use TextDataModule as --data$"):
        connect(SoftSRVModule(backbone=tiny_llama, parameterization="np", prompt_length=2), pl.LightningDataModule())


@pytest.mark.parametrize("kind, made_by", [(TextData, "TextDataModule"), (LabeledData, "LabeledDataModule"),
                                           (FewShotData, "FewShotDataModule"), (PromptData, "PromptDataModule"),
                                           (EmbeddingData, "EmbeddingDataModule")])
def test_every_kind_refuses_the_others_in_one_line_with_one_wording(kind, made_by):
    others = [k for k in (TextData, LabeledData, FewShotData, PromptData, EmbeddingData) if k is not kind]
    for other in others:
        with pytest.raises(SynthtuneError) as info:
            check_kind("SomeModule", kind, other(source="x.jsonl"))
        assert str(info.value) == (f"SomeModule reads {kind.kind} data, but x.jsonl is {other.kind} data; "
                                   f"use {made_by} as --data")
    check_kind("SomeModule", kind, kind())  # its own kind passes
    check_kind("SomeModule", DataInfo, kind())  # a module that reads any data takes every kind


def test_a_method_given_another_kind_of_data_stops_before_it_reads_a_field(tiny_llama):
    dm = PromptDataModule(backbone=tiny_llama, num_requests=2)
    dm.setup("predict")
    module = DawGenModule(backbone=tiny_llama, num_labels=2, prompt_length=2)
    with pytest.raises(SynthtuneError, match="DawGenModule reads labelled data, but requests is prompt data; "
                                             "use LabeledDataModule as --data"):
        connect(module, dm)


def test_a_pair_task_describes_its_first_sentences_as_the_model_will_read_them(tiny_llama):
    dm = LabeledDataModule("rte", backbone=tiny_llama, max_length=10, max_context_length=6)
    dm.setup("fit")
    info = dm.describe()
    assert info.is_pair and info.label_names == tuple(dm.label_names) and info.source == "rte"
    assert len(info.first_sentences) == len(set(r["text_a"] for r in dm.rows)) > 1
    assert [list(ids) for ids in info.first_sentence_ids] == [dm.encode_context(a) for a in info.first_sentences]
    # without a Trainer, the one way in is model.connect(dm.describe())
    module = DawGenModule(backbone=tiny_llama, num_labels=2, prompt_length=2, max_new_tokens=3)
    module.connect(info)
    texts = module.sample_texts(3)
    assert [t.split(" || ")[0] for t in texts] == list(info.first_sentences[:3])
    # the label names went into the prompts' tails
    name = dm.tokenizer(" " + info.label_names[1].replace("_", " "), add_special_tokens=False)["input_ids"][-1:]
    tail = module.backbone.get_input_embeddings()(torch.tensor(name)).float()
    assert torch.equal(module.label_prompts.prompts.detach()[1, -1:], tail)
