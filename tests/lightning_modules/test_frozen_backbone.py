"""The GPU-ready training options every frozen-LM method shares: activation checkpointing and
torch.compile of the frozen backbone, and Lightning's bf16 autocast with fp32 prompts."""

import inspect
import json

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

import helpers
from cli_runner import run_synthtune
from synthtune import lightning_modules
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.datamodules import TextDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules import SoftSRVModule
from synthtune.lightning_modules.frozen_backbone import FrozenBackboneModule

ROWS = [{"question": f"Tom has {i} apples and buys {i + 2} more. How many now?"} for i in range(16)]


@pytest.fixture()
def data_path(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return str(path)


def frozen_lm_methods():
    classes = (getattr(lightning_modules, name) for name in lightning_modules.__all__)
    return sorted({cls for cls in classes if isinstance(cls, type) and issubclass(cls, FrozenBackboneModule) and "__init__" in cls.__dict__},
                  key=lambda cls: cls.__name__)


def test_every_frozen_lm_method_takes_one_backbone_spec_with_the_speed_options():
    methods = frozen_lm_methods()
    assert {m.__name__ for m in methods} >= {"SoftSRVModule", "PromptTuningModule", "DawGenModule",
                                             "TemplateGenerationModule", "SynAlignGenerationModule"}
    for method in methods:
        params = inspect.signature(method.__init__).parameters
        assert params["backbone"].annotation in (BackboneSpec | str, "BackboneSpec | str"), method
        assert "backbone: " in method.__doc__, method  # the CLI help line
        assert not {"dtype", "compile", "gradient_checkpointing"} & set(params), method  # only as deprecated flat keys
    spec = inspect.signature(BackboneSpec).parameters
    for name in ("gradient_checkpointing", "compile"):
        assert spec[name].default is False and f"{name}: " in BackboneSpec.__doc__


def test_speed_options_reach_the_backbone_and_the_hparams(tiny_llama):
    module = SoftSRVModule(backbone=BackboneSpec(tiny_llama, gradient_checkpointing=True), parameterization="np",
                           prompt_length=4)
    assert module.hparams.backbone == {"name": tiny_llama, "dtype": "fp32", "compile": False,
                                       "gradient_checkpointing": True}
    assert module.hparams.prompt_length == 4
    layer = module.backbone.model.layers[0]
    assert layer.gradient_checkpointing
    module.train()
    assert layer.training and not layer.mlp.training and not module.backbone.training
    again = SoftSRVModule(**module.hparams)  # what load_from_checkpoint does
    assert again.backbone.model.layers[0].gradient_checkpointing
    plain = SoftSRVModule(backbone=tiny_llama, parameterization="np", prompt_length=4)
    assert not plain.backbone.model.layers[0].gradient_checkpointing
    assert plain.hparams.backbone["gradient_checkpointing"] is False


class AutocastProbe(Callback):
    """Records the dtype of the backbone's first projection output and of the prompt in each step."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        proj = module.backbone.model.layers[0].self_attn.q_proj
        self.handle = proj.register_forward_hook(lambda m, i, out: self.seen.append(out.dtype))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.handle.remove()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_bf16_mixed_runs_the_backbone_in_bf16_and_keeps_the_prompt_fp32(tiny_llama, data_path, tmp_path, dtype):
    module = SoftSRVModule(backbone=BackboneSpec(tiny_llama, dtype=dtype, gradient_checkpointing=True),
                           parameterization="np", prompt_length=4, lr=1e-2)
    before = [p.detach().clone() for p in module.soft_prompt.parameters()]
    probe = AutocastProbe()
    dm = TextDataModule(data_path, "{question}", backbone=tiny_llama, batch_size=4)
    helpers.trainer(tmp_path, max_steps=2, precision="bf16-mixed", callbacks=[probe]).fit(module, dm)
    # 2 steps x (forward + the checkpointed layer's recompute in backward), all under bf16 autocast
    assert probe.seen == [torch.bfloat16] * 4
    after = list(module.soft_prompt.parameters())
    assert all(p.dtype == torch.float32 for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    assert module.backbone.get_input_embeddings().weight.dtype == (torch.bfloat16 if dtype == "bf16" else torch.float32)


def test_true_half_precision_is_refused_before_training(tiny_llama, data_path, tmp_path):
    module = SoftSRVModule(backbone=tiny_llama, parameterization="np", prompt_length=4)
    dm = TextDataModule(data_path, "{question}", backbone=tiny_llama, batch_size=4)
    with pytest.raises(SynthtuneError, match="bf16-true casts the trainable prompts.*bf16-mixed"):
        helpers.trainer(tmp_path, max_steps=1, precision="bf16-true").fit(module, dm)


def test_cli_flags_checkpoint_holds_only_the_prompt(tiny_llama, data_path, tmp_path, capsys):
    root = tmp_path / "run"
    code, err = run_synthtune([
        "fit", "--config", str(helpers.REPO / "configs/softsrv/demo.yaml"), "--model.init_args.backbone.name", tiny_llama,
        "--model.init_args.prompt_length", "4", "--model.init_args.backbone.gradient_checkpointing", "true",
        "--data.init_args.path", data_path, "--data.init_args.limit", "null", "--data.init_args.batch_size", "4",
        "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false", "--trainer.callbacks", "[]",
        "--trainer.logger", "false", "--trainer.max_steps", "2", "--trainer.precision", "bf16-mixed"], capsys)
    assert code == 0, err
    saved = yaml.safe_load((root / "config.yaml").read_text())
    assert saved["model"]["init_args"]["backbone"]["gradient_checkpointing"] is True
    assert saved["model"]["init_args"]["backbone"]["compile"] is False
    ckpt = torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)  # plain values only: no synthtune class
    assert ckpt["hyper_parameters"]["backbone"]["gradient_checkpointing"] is True
    assert ckpt["state_dict"] and all(k.startswith(("soft_prompt.", "context_norm.")) for k in ckpt["state_dict"])  # prompt + z statistics
    assert all(v.dtype == torch.float32 for k, v in ckpt["state_dict"].items() if k.startswith("soft_prompt."))
    code, err = run_synthtune(["fit", "--config", str(root / "config.yaml"), "--trainer.precision", "bf16-true",
                               "--trainer.default_root_dir", str(tmp_path / "true")], capsys)
    assert code == 2 and err.strip().startswith("error: --trainer.precision bf16-true casts"), err


def test_sample_ends_at_the_tokenizer_and_the_generation_config_eos_and_reports_the_cap(tiny_llama):
    # the one generation tail every embedding generator goes through (SoftSRV, DawGen)
    from synthtune.components.sampling_settings import SamplingSettings

    module = SoftSRVModule(backbone=tiny_llama, parameterization="np", prompt_length=3,
                           sampling=SamplingSettings(temperature=0.0, max_new_tokens=5))
    prefix = module.soft_prompt(None, batch_size=2)
    texts, hit_cap = module.sample(prefix, [1, 2])
    assert hit_cap == [True, True] and all(texts)  # greedy from a random prompt ran to the 5-token cap
    first = module.engine.sample_embeds(module.backbone, prefix, [1, 2], module.sampling, [-1]).tokens[0][0]
    config = module.backbone.generation_config
    old = config.eos_token_id
    try:
        config.eos_token_id = [module.tokenizer.eos_token_id, first]  # the model's own EOS list counts too
        texts, hit_cap = module.sample(prefix, [1, 2])
    finally:
        config.eos_token_id = old
    assert texts == ["", ""] and hit_cap == [False, False]
