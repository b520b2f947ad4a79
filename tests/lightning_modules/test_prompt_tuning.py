import json
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

import helpers
from synthtune.cli import main
from synthtune.components.prompt_tuning.combination import smoothed_cross_entropy
from synthtune.components.prompt_tuning.gradient_surgery import project_conflicting, surgery_step
from synthtune.datamodules.fewshot import FewShotDataModule, collate_part
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.prompt_tuning import PromptTuningModule
from recorded_predictions import record_test_predictions, scores

REPO = Path(__file__).resolve().parents[2]
WORDS = [" terrible", " great"]  # split into several tokens by the tiny tokenizer


@pytest.fixture()
def syn_file(tmp_path):
    rows = [{"text": f"a {'good' if i % 2 else 'bad'} film number {i}", "label": i % 2} for i in range(16)]
    path = tmp_path / "syn.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def module(backbone, template="{text} It was", **kw):
    kw.setdefault("prompt_length", 3)
    kw.setdefault("lr", 0.05)
    return PromptTuningModule(template=template, label_words=WORDS, backbone=backbone, multi_token_labels=True, **kw)


def data(backbone, strategy="real", synthetic=None, **kw):
    kw.setdefault("batch_size", 8)
    return FewShotDataModule("sst2", backbone=backbone, seed=13, strategy=strategy, synthetic=synthetic,
                             test_limit=kw.pop("test_limit", 16), **kw)


trainer = partial(helpers.trainer, max_steps=3, every=1, limit_val_batches=0)


def real_batch(n=4):
    dm = FewShotDataModule("sst2", seed=13)
    dm.setup("fit")
    return collate_part(dm.train_real[:n // 2] + dm.train_real[-(n // 2):])


def conflicting_batches(m):
    """A real batch and a synthetic batch whose gradients w.r.t. P conflict (searched, deterministic)."""
    dm = FewShotDataModule("sst2", seed=13)
    dm.setup("fit")
    real = collate_part(dm.train_real[:2] + dm.train_real[-2:])
    g_real, = torch.autograd.grad(m.loss_on(real), m.soft_prompt.prompt)
    for start in range(0, 28, 2):
        for flip in (True, False):
            rows = [dict(r, label=1 - r["label"]) if flip else r for r in dm.train_real[start:start + 4]]
            g_syn, = torch.autograd.grad(m.loss_on(collate_part(rows)), m.soft_prompt.prompt)
            if torch.dot(g_syn.flatten(), g_real.flatten()) < 0:
                return {"real": real, "syn": collate_part(rows)}
    raise AssertionError("no conflicting synthetic batch found")


def expected_gradients(m, batch):
    g_real, = torch.autograd.grad(m.loss_on(batch["real"]), m.soft_prompt.prompt)
    g_syn, = torch.autograd.grad(m.loss_on(batch["syn"]), m.soft_prompt.prompt)
    return g_real, g_syn


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_optimizer_gets_real_plus_eps_times_projected_synthetic_gradient(tiny_llama, eps):
    m = module(tiny_llama, eps=eps)
    batch = conflicting_batches(m)
    g_real, g_syn = expected_gradients(m, batch)
    projected, conflicted = project_conflicting(g_syn, g_real)
    assert conflicted and torch.dot(projected.flatten(), g_real.flatten()).abs() < 1e-4 * g_real.norm() ** 2
    stats = m.paired_gradients(batch)
    assert stats["conflict"] is True
    assert torch.allclose(m.soft_prompt.prompt.grad, g_real + eps * projected, atol=1e-6)
    assert all(p.grad is None for p in m.backbone.parameters())  # the frozen LM gets no gradient
    opt = m.configure_optimizers()
    before = m.soft_prompt.prompt.detach().clone()
    opt.step()
    assert not torch.equal(before, m.soft_prompt.prompt.detach())


def test_agreeing_gradients_are_not_projected(tiny_llama):
    m = module(tiny_llama, eps=0.5)
    batch = {"real": real_batch(), "syn": real_batch()}  # identical batches: δ_syn = δ_real
    g_real, _ = expected_gradients(m, batch)
    assert m.paired_gradients(batch)["conflict"] is False
    assert torch.allclose(m.soft_prompt.prompt.grad, 1.5 * g_real, atol=1e-6)


def test_without_surgery_the_synthetic_gradient_is_added_unprojected(tiny_llama):
    m = module(tiny_llama, eps=0.5, gradient_surgery=False)
    batch = conflicting_batches(m)
    g_real, g_syn = expected_gradients(m, batch)
    stats = m.paired_gradients(batch)
    assert stats["conflict"] is True  # reported, but not acted on
    assert torch.allclose(m.soft_prompt.prompt.grad, g_real + 0.5 * g_syn, atol=1e-6)


@pytest.mark.parametrize("strategy", ["real+syn+ls", "real+syn"])
def test_label_smoothing_applies_to_synthetic_examples_only(tiny_llama, strategy):
    m = module(tiny_llama, label_smoothing=0.3)
    m.combination = strategy
    batch = {"real": real_batch(), "syn": real_batch()}
    rows = batch["real"]["rows"] + batch["syn"]["rows"]
    labels = torch.cat([batch["real"]["label"], batch["syn"]["label"]])
    with torch.no_grad():
        loss = m.training_step(batch, 0)
        logits = m.class_logits(rows)
    s = 0.3 if strategy == "real+syn+ls" else 0.0
    expected = smoothed_cross_entropy(logits, labels, torch.tensor([0.0] * 4 + [s] * 4))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    if strategy == "real+syn+ls":  # not the same as smoothing every example
        everywhere = smoothed_cross_entropy(logits, labels, torch.full((8,), 0.3))
        assert loss.item() != pytest.approx(everywhere.item(), rel=1e-5)


def test_paired_fit_trains_p_only_logs_conflicts_and_checkpoints_only_p(tiny_llama, tmp_path, monkeypatch):
    # Three in four synthetic rows positive: with the tiny model some paired steps conflict and some do not.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"text": f"a film number {i}", "label": int(i % 4 != 0)}) + "\n"
                             for i in range(16)))
    conflicts = []  # the test's own count: δ_syn·δ_real < 0, from the gradients surgery is given

    def counting_surgery(params, loss_real, loss_syn, eps, **kwargs):
        g_real = torch.cat([g.flatten() for g in torch.autograd.grad(loss_real, params, retain_graph=True)])
        g_syn = torch.cat([g.flatten() for g in torch.autograd.grad(loss_syn, params, retain_graph=True)])
        conflicts.append(bool(torch.dot(g_real, g_syn) < 0))
        return surgery_step(params, loss_real, loss_syn, eps, **kwargs)

    monkeypatch.setattr("synthtune.lightning_modules.prompt_tuning.surgery_step", counting_surgery)
    m = module(tiny_llama)
    frozen = {k: v.clone() for k, v in m.backbone.state_dict().items()}
    before = m.soft_prompt.prompt.detach().clone()
    t = trainer(tmp_path, max_steps=3)
    t.fit(m, data(tiny_llama, "paired", str(mixed)))
    assert not m.automatic_optimization and t.global_step == 3 and m.paired_steps == 3
    assert len(conflicts) == 3 and 0 < sum(conflicts) < 3, f"want conflicting and agreeing steps, got {conflicts}"
    assert float(t.callback_metrics["train/conflict_rate"]) == pytest.approx(sum(conflicts) / 3)
    assert not torch.equal(before, m.soft_prompt.prompt.detach())
    assert all(torch.equal(v, m.backbone.state_dict()[k]) for k, v in frozen.items())
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert set(ckpt["state_dict"]) == {"soft_prompt.prompt"}
    assert len(ckpt["optimizer_states"]) == 1 and ckpt["synthtune"]["method"] == "prompt_tuning"


def test_interrupted_and_resumed_fit_ends_with_the_same_prompt(tiny_llama, syn_file, tmp_path):
    strategy = "paired"  # manual optimisation; the automatic path resumes like any Lightning module
    full = module(tiny_llama)
    trainer(tmp_path / "full", max_steps=5).fit(full, data(tiny_llama, strategy, syn_file))
    part = module(tiny_llama)
    trainer(tmp_path / "part", max_steps=2).fit(part, data(tiny_llama, strategy, syn_file))
    resumed = module(tiny_llama)
    trainer(tmp_path / "part", max_steps=5).fit(resumed, data(tiny_llama, strategy, syn_file),
                                                ckpt_path=str(tmp_path / "part" / "checkpoints" / "last.ckpt"))
    assert torch.allclose(full.soft_prompt.prompt, resumed.soft_prompt.prompt, atol=1e-6)


def test_validation_and_test_report_accuracy_and_macro_f1(tiny_llama, tmp_path, monkeypatch):
    runs = record_test_predictions(monkeypatch)
    m = module(tiny_llama)
    t = trainer(tmp_path, max_steps=1, limit_val_batches=1, val_check_interval=1)
    t.fit(m, data(tiny_llama))
    assert {"val/acc", "val/f1"} <= set(t.callback_metrics)
    result = t.test(m, data(tiny_llama), verbose=False)[0]
    predictions, labels = runs[str(tmp_path)]
    assert len(predictions) == 16 and set(labels) == {0, 1}  # test_limit rows of both classes
    expected = scores(predictions, labels)
    assert result["test/acc"] == pytest.approx(expected["acc"]) and result["test/f1"] == pytest.approx(expected["f1"])


def test_zero_shot_and_in_context_modes_test_without_training(tiny_llama, tmp_path, monkeypatch):
    runs = record_test_predictions(monkeypatch)
    zero = module(tiny_llama, mode="zero_shot")
    result = trainer(tmp_path / "zero").test(zero, data(tiny_llama), verbose=False)[0]
    icl = module(tiny_llama, mode="in_context", demonstrations_per_class=2)
    result_icl = trainer(tmp_path / "icl").test(icl, data(tiny_llama), verbose=False)[0]
    for got, root in ((result, "zero"), (result_icl, "icl")):
        predictions, labels = runs[str(tmp_path / root)]
        assert len(predictions) == 16
        assert {"test/acc": got["test/acc"], "test/f1": got["test/f1"]} == pytest.approx(
            {f"test/{k}": v for k, v in scores(predictions, labels).items()})
    context = icl.tokenizer.decode(icl._context_ids)
    assert context.count("It was terrible") == 2 and context.count("It was great") == 2
    with pytest.raises(SynthtuneError, match="without training"):
        trainer(tmp_path).fit(module(tiny_llama, mode="zero_shot"), data(tiny_llama))


def test_t5_backbone_trains_with_the_paired_strategy(tiny_t5, syn_file, tmp_path, monkeypatch):
    runs = record_test_predictions(monkeypatch)
    m = module(tiny_t5, template="{text} It was <extra_id_0>.")
    before = m.soft_prompt.prompt.detach().clone()
    t = trainer(tmp_path, max_steps=2)
    t.fit(m, data(tiny_t5, "paired", syn_file))
    assert not torch.equal(before, m.soft_prompt.prompt.detach())
    acc = t.test(m, data(tiny_t5), verbose=False)[0]["test/acc"]
    predictions, labels = runs[str(tmp_path)]
    assert len(predictions) == 16
    assert acc == pytest.approx(scores(predictions, labels)["acc"])
    with pytest.raises(SynthtuneError, match="<extra_id_0>"):
        module(tiny_t5, template="{text} It was")


@pytest.mark.parametrize("kwargs,needle", [
    ({"eps": -0.1}, "eps"),
    ({"mode": "few_shot"}, "unknown mode"),
    ({"template": "no fields here"}, "uses no field"),
])
def test_bad_arguments_are_one_line(tiny_llama, kwargs, needle):
    with pytest.raises(SynthtuneError, match=needle) as info:
        module(tiny_llama, **kwargs)
    assert "\n" not in str(info.value)


def test_multi_token_label_word_without_the_flag_is_one_line(tiny_llama):
    with pytest.raises(SynthtuneError, match="single token") as info:
        PromptTuningModule(template="{text} It was", label_words=WORDS, backbone=tiny_llama)
    assert "\n" not in str(info.value)


def test_template_fields_must_match_the_task(tiny_llama, tmp_path):
    with pytest.raises(SynthtuneError, match="not text fields of task sst2"):
        trainer(tmp_path).fit(module(tiny_llama, template="{text_a} It was"), data(tiny_llama))


def _ddp_prompt(tiny, syn, root, devices, strategy):
    torch.manual_seed(0)
    m = module(tiny, eps=1.0, lr=0.05)
    t = pl.Trainer(default_root_dir=str(root), max_steps=3, accelerator="cpu", devices=devices, strategy=strategy,
                   logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                   limit_val_batches=0)
    t.fit(m, data(tiny, "paired", syn, batch_size=8))
    return m.soft_prompt.prompt.detach().clone(), m


def test_two_process_ddp_paired_run_equals_one_process_on_the_same_global_batches(tiny_llama, syn_file, tmp_path):
    # Each of the 2 ranks gets half of every global batch of 8. surgery_step averages δ_real and δ_syn
    # over the ranks before the conflict test and the projection, and the mean of two half-batch means
    # is the global-batch mean, so both runs project the same gradients and end with the same P.
    single, _ = _ddp_prompt(tiny_llama, syn_file, tmp_path / "one", 1, "auto")
    double, _ = _ddp_prompt(tiny_llama, syn_file, tmp_path / "two", 2, "ddp_fork")
    assert not torch.equal(single, module(tiny_llama).soft_prompt.prompt.detach())
    assert torch.allclose(single, double, atol=1e-5)


def run_main(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("override,needle", [
    (["--model.init_args.eps", "-1"], "eps"),
    (["--data.init_args.strategy", "mix"], "unknown combination strategy"),
    (["--data.init_args.strategy", "paired"], "needs synthetic data"),
])
def test_cli_bad_input_is_one_line(tiny_llama, tmp_path, capsys, monkeypatch, override, needle):
    monkeypatch.chdir(REPO)
    code, err = run_main(["fit", "--config", "configs/prompt_tuning/demo.yaml", "--model.init_args.backbone", tiny_llama,
                          "--trainer.default_root_dir", str(tmp_path), *override], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and needle in lines[0] and "Traceback" not in err


def test_default_optimizer_is_sgd_and_applies_exactly_minus_lr_times_the_projected_update(tiny_llama):
    """Alg. 2: P ← P − η·δ with δ = δ_real + ε·δ'_syn (projected), nothing rescaled per coordinate."""
    m = module(tiny_llama, eps=0.5, lr=0.7)
    assert m.hparams.optimizer == "sgd" and m.hparams.weight_decay == 0.0 and m.hparams.momentum == 0.0
    batch = conflicting_batches(m)
    g_real, g_syn = expected_gradients(m, batch)
    projected, conflicted = project_conflicting(g_syn, g_real)
    assert conflicted
    opt = m.configure_optimizers()
    assert type(opt) is torch.optim.SGD
    before = m.soft_prompt.prompt.detach().clone()
    m.paired_gradients(batch)
    opt.step()
    torch.testing.assert_close(m.soft_prompt.prompt.detach() - before, -0.7 * (g_real + 0.5 * projected),
                               rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name,cls", [("adafactor", "Adafactor"), ("adamw", "AdamW"), ("sgd", "SGD")])
def test_optimizer_is_a_named_choice(tiny_llama, name, cls):
    opt = module(tiny_llama, optimizer=name, lr=0.3, momentum=0.5 if name == "sgd" else 0.0).configure_optimizers()
    assert type(opt).__name__ == cls and opt.param_groups[0]["lr"] == 0.3
    with pytest.raises(SynthtuneError, match="unknown optimizer"):
        module(tiny_llama, optimizer="adam")


@pytest.mark.parametrize("style,words,cue", [("decoder", [" negative", " positive"], "\nAnswer: The sentiment is"),
                                             ("lmbff", [" terrible", " great"], " It was")])
def test_template_and_label_words_default_to_the_tasks_style(tiny_llama, tmp_path, style, words, cue):
    m = PromptTuningModule(backbone=tiny_llama, template_style=style, prompt_length=2, multi_token_labels=True)
    assert m.reader is None  # resolved when the task is known
    trainer(tmp_path).test(m, data(tiny_llama), verbose=False)
    assert list(m.verbalizer.label_words) == words and m.reader.template.endswith(cue)
    assert m.reader.render({"text": "a fine film"}).startswith("Movie review: a fine film" if style == "decoder"
                                                               else "a fine film It was")


def test_t5_default_template_gets_the_sentinel_and_scores_after_it(tiny_t5, tmp_path):
    m = PromptTuningModule(backbone=tiny_t5, prompt_length=2, multi_token_labels=True)
    trainer(tmp_path).test(m, data(tiny_t5), verbose=False)
    assert m.reader.template.endswith("Answer: The sentiment is <extra_id_0>")
    assert m.reader.sentinel_id == m.tokenizer.convert_tokens_to_ids("<extra_id_0>")


def test_a_task_without_default_template_is_one_line(tiny_llama, tmp_path):
    m = PromptTuningModule(backbone=tiny_llama, prompt_length=2, multi_token_labels=True)
    with pytest.raises(SynthtuneError, match="has no default template") as info:
        m.set_reader("gsm8k")
    assert "\n" not in str(info.value)


def test_synthetic_only_fit_trains_on_synthetic_rows(tiny_llama, syn_file, tmp_path):
    m = module(tiny_llama)
    seen = []
    original = m.class_logits
    m.class_logits = lambda rows: (seen.extend(r["text"] for r in rows), original(rows))[1]
    before = m.soft_prompt.prompt.detach().clone()
    trainer(tmp_path, max_steps=2).fit(m, data(tiny_llama, "syn", syn_file))
    assert seen and all(t.startswith("a ") and "film number" in t for t in seen)
    assert not torch.equal(before, m.soft_prompt.prompt.detach())


@pytest.mark.parametrize("template", ["Review: {review} It was", "Review: {text} It was", None])
def test_a_template_names_the_data_column_or_the_text_field(tiny_llama, template):
    """With --data.init_args.text_field review, the template may write {review} (the user's column) or {text} (the
    row field it is read into): both render the review (issue 32); the task's default template works too."""
    from synthtune.lightning_modules.classification import rename_fields

    reviews = REPO / "docs" / "your_data" / "reviews.csv"
    dm = FewShotDataModule(train_path=str(reviews), text_field="review", k=2, seed=13)
    dm.setup("fit")
    m = PromptTuningModule(template=template, label_words=WORDS if template else None, backbone=tiny_llama,
                           prompt_length=3, multi_token_labels=True)
    if template is None:
        with pytest.raises(SynthtuneError, match="has no default template"):  # a task of your own names its template
            m.connect(dm.describe())
        return
    m.connect(dm.describe())
    row = dm.train_real[0]
    assert m.reader.fields == ("text",) and m.reader.render(row) == f"Review: {row['text']} It was"
    assert rename_fields("{{x}} {review!r:>3} {a}", {"review": "text"}) == "{{x}} {text!r:>3} {a}"
    with pytest.raises(SynthtuneError, match=r"template field\(s\) \['stars'\] are not text fields"):
        PromptTuningModule(template="{stars} {review}", label_words=WORDS, backbone=tiny_llama, prompt_length=3,
                           multi_token_labels=True).connect(dm.describe())
