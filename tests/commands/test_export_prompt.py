"""``synthtune export-prompt`` end to end: tiny runs fitted through the CLI, exported, and loaded back by PEFT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from cli_runner import run_synthtune
from synthtune.commands import run_command

QUESTIONS = [f"Tom has {i} apples and buys {i + 2} more. How many now?" for i in range(12)]


def _fit(tmp_path: Path, capsys, name: str, model: dict, data: dict, steps: int = 3) -> Path:
    run = tmp_path / name
    cfg = {"seed_everything": 0, "model": model, "data": data,
           "trainer": {"default_root_dir": str(run), "accelerator": "cpu", "devices": 1, "max_steps": steps,
                       "logger": False, "enable_progress_bar": False, "enable_model_summary": False}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code, err = run_synthtune(["fit", "--config", str(path)], capsys)
    assert code == 0, err
    return run


def _softsrv(tmp_path: Path, capsys, tiny_llama: str, parameterization: str) -> Path:
    data_file = tmp_path / "train.jsonl"
    data_file.write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    return _fit(tmp_path, capsys, f"softsrv-{parameterization}", {
        "class_path": "synthtune.lightning_modules.SoftSRVModule",
        "init_args": {"backbone": tiny_llama, "parameterization": parameterization, "prompt_length": 4,
                      "mlp_hidden": 8, "lr": 0.05, "max_new_tokens": 8, "seed": 3}},
        {"class_path": "synthtune.datamodules.TextDataModule",
         "init_args": {"path": str(data_file), "text_template": "{question}", "batch_size": 4}})


def _module(run: Path):
    from synthtune.api.export_prompt import load_run

    return load_run(run, run / "checkpoints" / "last.ckpt")[0]


def _peft(tiny_llama: str, adapter: Path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama), str(adapter)).eval()


def test_softsrv_np_export_is_a_peft_adapter_with_the_same_loss(tiny_llama, tmp_path, capsys):
    from synthtune.components.softsrv.prefix_lm import reconstruction_loss

    run = _softsrv(tmp_path, capsys, tiny_llama, "np")
    out = tmp_path / "np-adapter"
    code, err = run_synthtune(["export-prompt", "--run", str(run), "--output", str(out)], capsys)
    assert code == 0, err
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "export.json"} <= {
        p.name for p in out.iterdir()}
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "PROMPT_TUNING" and config["num_virtual_tokens"] == 4
    assert config["base_model_name_or_path"] == str(Path(tiny_llama).resolve())

    module = _module(run)
    peft_model = _peft(tiny_llama, out)
    trained = module.soft_prompt.prompt.detach()
    assert torch.equal(peft_model.get_prompt(1)[0], trained)
    # The prompt moved away from its initialisation: an export of the untrained prompt would fail here.
    assert not torch.allclose(trained, module.random_token_prompt((4,), 3))

    tok = module.tokenizer
    text = "Sara has 3 pens and buys 4 more."
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])  # as TextDataModule
    with torch.no_grad():
        ours = reconstruction_loss(module.backbone, module.prompts(torch.zeros(1, dtype=torch.long)), ids,
                                   torch.ones_like(ids))
        theirs = peft_model(input_ids=ids, labels=ids).loss
        plain = peft_model.get_base_model()(input_ids=ids, labels=ids).loss
    assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-6), (theirs, ours)
    assert not torch.allclose(plain, ours, rtol=1e-3)  # the prompt matters: without it the loss differs
    info = json.loads((out / "export.json").read_text())
    assert info["kind"] == "softsrv-np" and info["shape"] == [4, 32]
    assert info["tokenization"]["adds_special_tokens_by_default"] is False  # the tiny tokenizer adds no BOS
    assert "PeftModel.from_pretrained" in (out / "README.md").read_text()


def test_prompt_tuning_export_gives_the_same_class_scores(tiny_llama, tmp_path, capsys):
    run = _fit(tmp_path, capsys, "pt", {
        "class_path": "synthtune.lightning_modules.PromptTuningModule",
        "init_args": {"backbone": tiny_llama, "template": "{text} It was", "label_words": [" terrible", " great"],
                      "multi_token_labels": True, "prompt_length": 3, "lr": 0.05}},
        {"class_path": "synthtune.datamodules.FewShotDataModule",
         "init_args": {"task": "sst2", "seed": 13, "strategy": "real", "batch_size": 4, "test_limit": 8}}, steps=2)
    out = tmp_path / "pt-adapter"
    report = run_command("export-prompt", ["--run", str(run), "--output", str(out)])
    assert report["kind"] == "prompt-tuning" and report["label_words"] == [" terrible", " great"]

    module = _module(run)
    peft_model = _peft(tiny_llama, out)
    rows = [{"text": "a lovely film", "label": 1}, {"text": "dull and far too long, sadly", "label": 0}]
    with torch.no_grad():
        ours = module.class_logits(rows)  # [2, 2]: summed log-probs of each label word's tokens after [P; row]
        theirs = []
        for row in rows:
            ids = module.tokenizer(module.reader.render(row), add_special_tokens=False)["input_ids"]
            scores = []
            for word in module.reader.verbalizer.token_ids:  # PEFT reads [P; row; word] and scores the word
                full = torch.tensor([ids + list(word)])
                logp = torch.log_softmax(peft_model(input_ids=full).logits[0].float(), dim=-1)
                t = logp.shape[0] - full.shape[1]  # PEFT's logits include the virtual-token positions
                scores.append(sum(logp[t + len(ids) - 1 + j, w] for j, w in enumerate(word)))
            theirs.append(torch.stack(scores))
    assert torch.allclose(torch.stack(theirs), ours, rtol=1e-5, atol=1e-5), (theirs, ours)


def test_softsrv_mc_export_writes_the_module_prompt_of_each_context(tiny_llama, tmp_path, capsys):
    from safetensors.torch import load_file

    run = _softsrv(tmp_path, capsys, tiny_llama, "mc")
    out = tmp_path / "mc-prompts"
    code, err = run_synthtune(["export-prompt", "--run", str(run), "--output", str(out)], capsys)
    assert code == 0, err
    assert not (out / "adapter_config.json").exists()
    prompts = load_file(str(out / "prompts.safetensors"))["prompts"]
    module = _module(run)
    assert prompts.shape == (len(QUESTIONS), 4, 32)
    contexts = [json.loads(line)["text"] for line in (out / "contexts.jsonl").read_text().splitlines()]
    assert contexts == list(module.data_info.train_texts)
    with torch.no_grad():
        for i in (0, 7):
            assert torch.allclose(prompts[i], module.prompts(torch.tensor([i]))[0])
    assert not torch.allclose(prompts[0], prompts[7])  # a prompt per context, not one shared prompt
    info = json.loads((out / "export.json").read_text())
    assert "PEFT" in info["why_not_peft"] and "MLP" in info["why_not_peft"]

    # --contexts: the prompts of new texts, through the run's template and context encoder.
    other = tmp_path / "new.jsonl"
    other.write_text(json.dumps({"question": QUESTIONS[7]}) + "\n" + json.dumps({"question": "A new one?"}) + "\n")
    out2 = tmp_path / "mc-new"
    run_command("export-prompt", ["--run", str(run), "--output", str(out2), "--contexts", str(other)])
    new = load_file(str(out2 / "prompts.safetensors"))["prompts"]
    assert new.shape == (2, 4, 32)
    assert torch.allclose(new[0], prompts[7], atol=1e-5)  # the same text gives the same prompt


def test_mistakes_are_one_line(tiny_llama, tmp_path, capsys):
    def refused(args: list[str], words: str) -> None:
        code, err = run_synthtune(["export-prompt", *args], capsys)
        assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
        assert words in err, err

    out = str(tmp_path / "out")
    refused(["--run", str(tmp_path / "nope"), "--output", out], "run folder not found")
    folder = tmp_path / "half-run"
    folder.mkdir()
    refused(["--run", str(folder), "--output", out], "no config.yaml")
    (folder / "config.yaml").write_text("model: {}\n")
    refused(["--run", str(folder), "--output", out], "checkpoint not found")
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    refused(["--run", str(folder), "--output", out], "not a readable checkpoint")

    run = _softsrv(tmp_path, capsys, tiny_llama, "np")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    refused(["--run", str(run), "--output", str(busy)], "exists and is not empty")
    refused(["--run", str(run), "--output", str(busy), "--overwrite"], "not a folder export-prompt wrote")
    assert (busy / "notes.txt").read_text() == "mine"  # nothing of the user's was replaced
    refused(["--run", str(run), "--output", out, "--contexts", str(tmp_path / "x.jsonl")], "drop --contexts")
    assert not Path(out).exists()

    # An earlier export is replaced with --overwrite, and only then.
    assert run_synthtune(["export-prompt", "--run", str(run), "--output", out], capsys)[0] == 0
    refused(["--run", str(run), "--output", out], "exists and is not empty")
    assert run_synthtune(["export-prompt", "--run", str(run), "--output", out, "--overwrite"], capsys)[0] == 0
    assert not list(tmp_path.glob(".out.*.tmp"))  # no half-built folder left behind


def test_dawgen_export_writes_each_label_prompt_and_its_inputs_embeds_layout(tiny_llama, tmp_path, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from synthtune.components.dawgen.label_prompts import label_token_scores

    run = _fit(tmp_path, capsys, "dawgen", {
        "class_path": "synthtune.lightning_modules.DawGenModule",
        "init_args": {"backbone": tiny_llama, "prompt_length": 3, "weight_mlp_size": 8, "lr": 0.5, "optimizer": "sgd",
                      "max_new_tokens": 6}},
        {"class_path": "synthtune.datamodules.LabeledDataModule",
         "init_args": {"task": "sst2", "batch_size": 4, "max_length": 10, "num_per_label": 3}}, steps=2)
    out = tmp_path / "dawgen-prompts"
    report = run_command("export-prompt", ["--run", str(run), "--output", str(out)])
    module = _module(run)
    prompts = load_file(str(out / "prompts.safetensors"))["prompts"]
    assert prompts.shape == (2, 3, 32) and report["labels"] == list(module.data_info.label_names)
    assert torch.equal(prompts, module.label_prompts.prompts.detach())
    assert "one prompt per label" in report["why_not_peft"]

    # The README's recipe (inputs_embeds = [Q_l ; E(x) ; EOS], labels = x) gives the run's own log-likelihood.
    tok = module.tokenizer
    ids = torch.tensor([tok("a warm and lovely film", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    with torch.no_grad():
        for label in (0, 1):
            p = prompts[label: label + 1]
            embeds = torch.cat([p, base.get_input_embeddings()(ids)], dim=1)
            labels = torch.cat([torch.full((1, p.shape[1]), -100), ids], dim=1)
            theirs = base(inputs_embeds=embeds, labels=labels).loss
            ours = -label_token_scores(module.backbone, module.label_prompts(torch.tensor([label])), ids,
                                       torch.ones_like(ids)).logprobs.mean()
            assert torch.allclose(theirs, ours, rtol=1e-5, atol=1e-6), (label, theirs, ours)
