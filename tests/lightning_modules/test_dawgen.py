import copy
import json
from collections import Counter
from functools import partial

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

import helpers
from synthtune.callbacks import JsonlPredictionWriter
from synthtune.components.dawgen.label_prompts import label_token_scores
from synthtune.components.dawgen.lookahead import _math_attention
from synthtune.components.sampling import sample_seed
from synthtune.datamodules.labeled import LabeledDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.dawgen import DawGenModule, weight_entropy


class Recorder(Callback):
    def __init__(self):
        self.losses, self.calls = [], 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.calls += 1
        self.losses.append(float(outputs["loss"]))
        self.token_weights = (outputs["token_weights"], batch["target_mask"])  # of the last step
        self.target_ids = batch["target_ids"]


def make(backbone, task="sst2", **kw):
    args = dict(prompt_length=3, lam=0.5, weight_mlp_size=8, lr=0.05, weight_lr=0.05, max_new_tokens=4)
    args.update(kw)
    module = DawGenModule(backbone=backbone, **args)
    dm = LabeledDataModule(task, backbone=backbone, batch_size=4, max_length=10, max_context_length=8,
                           num_per_label=3)
    return module, dm


trainer = partial(helpers.trainer, max_steps=3, every=3)


def params(module):
    return {k: v.detach().clone() for k, v in module.named_parameters() if not k.startswith("backbone.")}


def test_module_meta_gradient_matches_unrolled_autograd_and_finite_differences(tiny_llama):
    module, dm = make(tiny_llama, lam=0.5, optimizer="sgd", inner_lr=2.0)
    module.backbone = copy.deepcopy(module.backbone).double()  # a private float64 copy: tight tolerances
    module.label_prompts.double()
    module.weight_net.double()
    torch.nn.init.normal_(module.weight_net.mlp[-1].weight, std=0.5)  # not the uniform start: every layer gets a gradient
    dm.setup("fit")
    batch = dm.collate(dm._items[14:20])  # both labels
    reps = module.token_reps(batch)
    result = module.compute_meta_gradient(batch, reps)

    wnet, q = module.weight_net, module.label_prompts.prompts
    mask, labels = batch["target_mask"], batch["label"]

    def outer_after_step(create_graph):
        inner = module.dawgen_loss(q[labels], wnet(reps, mask), batch)[0]
        (g,) = torch.autograd.grad(inner, [q], create_graph=create_graph)
        return module.disc_loss(q - module.hparams.inner_lr * g, batch)  # Alg. 1, L_disc(Q'(W))

    with _math_attention():
        unrolled = torch.autograd.grad(outer_after_step(True), list(wnet.parameters()))
    for (name, _), expected in zip(wnet.named_parameters(), unrolled):
        torch.testing.assert_close(result.grads[name], expected, rtol=1e-8, atol=1e-12)
    assert float(result.grads["mlp.0.weight"].norm()) > 0

    # Central finite difference along the (unit) meta-gradient direction: its slope is |∇_W L_disc(Q'(W))|.
    # The tiny Llama's RMSNorm computes in float32 even in a float64 model, so h cannot be tiny.
    direction = {name: g / torch.sqrt(sum((v ** 2).sum() for v in result.grads.values()))
                 for name, g in result.grads.items()}
    norm = float(torch.sqrt(sum((v ** 2).sum() for v in result.grads.values())))
    h = 1e-2

    def shifted(sign):
        with torch.no_grad():
            for name, p in wnet.named_parameters():
                p.add_(sign * h * direction[name])
        with _math_attention():
            value = float(outer_after_step(False))
        with torch.no_grad():
            for name, p in wnet.named_parameters():
                p.sub_(sign * h * direction[name])
        return value

    assert (shifted(1.0) - shifted(-1.0)) / (2 * h) == pytest.approx(norm, rel=2e-2)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_virtual_step_equals_the_real_step_on_the_same_batch(tiny_llama, optimizer):
    """Alg. 1's lookahead replays the real Q update: same rule, same lr, same optimizer state."""
    module, dm = make(tiny_llama, optimizer=optimizer, lr=0.05)
    dm.setup("fit")
    batch = dm.collate(dm._items[14:20])  # both labels
    reps = module.token_reps(batch)
    weights = module.weight_net(reps, batch["target_mask"]).detach()
    opt = module.configure_optimizers()[0]
    assert type(opt) is {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
    q = module.label_prompts.prompts

    def real_step():
        opt.zero_grad()
        module.dawgen_loss(module.label_prompts(batch["label"]), weights, batch)[0].backward()
        opt.step()

    real_step()  # the optimizer state (Adam moments, step count) is not fresh
    (g,) = torch.autograd.grad(module.dawgen_loss(module.label_prompts(batch["label"]), weights, batch)[0], [q])
    virtual = module.lookahead(opt)({"prompts": q}, {"prompts": g})["prompts"].detach()
    before = q.detach().clone()
    real_step()
    assert not torch.allclose(before, q.detach())
    torch.testing.assert_close(virtual, q.detach(), rtol=1e-5, atol=1e-7)


def test_objective_is_per_label_wgen_plus_lambda_dist_with_lambda_one_by_default(tiny_llama):
    module, dm = make(tiny_llama, lam=2.5)
    assert DawGenModule(backbone=tiny_llama, prompt_length=3, weight_mlp_size=8).hparams.lam == 1.0
    dm.setup("fit")
    batch = dm.collate(dm._items[13:20])  # labels 0 and 1, unequal counts
    weights = torch.ones_like(batch["target_mask"], dtype=torch.float32)
    total, l_wgen, l_dist = module.dawgen_loss(module.label_prompts(batch["label"]), weights, batch)
    assert float(l_dist) > 0
    torch.testing.assert_close(total, l_wgen + 2.5 * l_dist)
    # E_l[L_wGen]: the mean of each label's token mean, not the mean over all tokens.
    scores = label_token_scores(module.backbone, module.label_prompts(batch["label"]), *module._inputs(batch))
    mask, labels = batch["target_mask"].bool(), batch["label"]
    per_label = [-(scores.logprobs[labels == lab][mask[labels == lab]]).mean() for lab in (0, 1)]
    torch.testing.assert_close(l_wgen, torch.stack(per_label).mean())
    assert not torch.allclose(l_wgen, -scores.logprobs[mask].mean())


def test_one_step_per_batch_only_q_and_w_change_and_checkpoint_is_small(tiny_llama, tmp_path):
    module, dm = make(tiny_llama)
    frozen = {k: v.clone() for k, v in module.backbone.state_dict().items()}
    before = params(module)
    rec = Recorder()
    tr = trainer(tmp_path, max_steps=3, callbacks=[rec])
    tr.fit(module, dm)
    assert tr.global_step == 3 and rec.calls == 3  # two optimizers, one step per batch
    assert all(torch.equal(v, module.backbone.state_dict()[k]) for k, v in frozen.items())
    after = params(module)
    assert set(after) == {"label_prompts.prompts", "weight_net.mlp.0.weight", "weight_net.mlp.0.bias",
                          "weight_net.mlp.2.weight", "weight_net.mlp.2.bias"}
    assert not torch.equal(before["label_prompts.prompts"], after["label_prompts.prompts"])
    assert not torch.equal(before["weight_net.mlp.2.weight"], after["weight_net.mlp.2.weight"])
    for key in ("train/wgen", "train/disc", "train/dist", "train/weight_entropy", "train/loss"):
        assert torch.isfinite(tr.callback_metrics[key])
    weights, mask = rec.token_weights  # entropy of the last step's weights over its valid tokens / log N
    p = weights[mask.bool()].double().numpy()
    p = p / p.sum()
    entropy = -(p * np.log(p)).sum() / np.log(len(p))
    assert float(tr.callback_metrics["train/weight_entropy"]) == pytest.approx(entropy, rel=1e-5)
    assert entropy < 0.999  # the learned W has moved the weights off uniform (entropy 1)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert set(ckpt["state_dict"]) == set(after)
    assert len(ckpt["optimizer_states"]) == 2 and all(s["state"] for s in ckpt["optimizer_states"])
    assert ckpt["synthtune"]["method"] == "dawgen" and ckpt["synthtune"]["num_labels"] == 2


def test_resume_restores_both_optimizers_and_equals_uninterrupted_training(tiny_llama, tmp_path):
    full = Recorder()
    module, dm = make(tiny_llama, meta_every_n_steps=2)
    trainer(tmp_path / "full", max_steps=6, every=3, callbacks=[full]).fit(module, dm)
    reference = params(module)

    first, second = Recorder(), Recorder()
    module, dm = make(tiny_llama, meta_every_n_steps=2)
    trainer(tmp_path / "cut", max_steps=3, every=3, callbacks=[first]).fit(module, dm)
    module, dm = make(tiny_llama, meta_every_n_steps=2)
    trainer(tmp_path / "cut", max_steps=6, every=3, callbacks=[second]).fit(
        module, dm, ckpt_path=str(tmp_path / "cut" / "checkpoints" / "last.ckpt"))
    assert first.losses + second.losses == pytest.approx(full.losses, rel=1e-5)
    for name, value in params(module).items():
        torch.testing.assert_close(value, reference[name], rtol=1e-5, atol=1e-7)


def test_uniform_mode_keeps_weights_at_one_and_never_steps_w(tiny_llama, tmp_path):
    module, dm = make(tiny_llama, weight_mode="uniform", lam=0.0)
    before = params(module)
    tr = trainer(tmp_path, max_steps=2)
    tr.fit(module, dm)
    after = params(module)
    assert any(k.startswith("weight_net.") for k in before)
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("weight_net."))
    assert float(tr.callback_metrics["train/weight_entropy"]) == pytest.approx(1.0)
    assert float(tr.callback_metrics["train/dist"]) == 0.0 and float(tr.callback_metrics["train/disc"]) < 0


def test_pin_eos_weight_keeps_each_targets_eos_at_one(tiny_llama, tmp_path):
    module, dm = make(tiny_llama, pin_eos_weight=True)
    rec = Recorder()
    trainer(tmp_path, max_steps=2, callbacks=[rec]).fit(module, dm)
    weights, mask = rec.token_weights
    at_eos = (rec.target_ids == module.tokenizer.eos_token_id) & mask.bool()
    assert int(at_eos.sum()) >= len(mask)  # every target ends with EOS
    assert torch.equal(weights[at_eos], torch.ones_like(weights[at_eos]))
    free = mask.bool() & ~at_eos
    assert float(weights[free].sum()) == pytest.approx(float(free.sum()), rel=1e-5)  # the rest still average 1
    assert float(weights[free].std()) > 0  # and are still learned


def test_weight_entropy_is_one_for_uniform_and_lower_when_peaked():
    mask = torch.tensor([[1, 1, 1, 0]])
    assert float(weight_entropy(torch.tensor([[1.0, 1.0, 1.0, 0.0]]), mask)) == pytest.approx(1.0)
    assert float(weight_entropy(torch.tensor([[2.8, 0.1, 0.1, 0.0]]), mask)) < 0.5


@pytest.mark.parametrize("fixture, task", [("tiny_llama", "rte"), ("tiny_t5", "sst2")])
def test_generation_writes_the_requested_count_per_label(fixture, task, request, tmp_path):
    backbone = request.getfixturevalue(fixture)
    module, dm = make(backbone, task)
    trainer(tmp_path, max_steps=2, every=2).fit(module, dm)
    out = tmp_path / "samples.jsonl"
    module, dm = make(backbone, task)
    trainer(tmp_path, callbacks=[JsonlPredictionWriter(str(out))]).predict(
        module, dm, ckpt_path=str(tmp_path / "checkpoints" / "last.ckpt"), return_predictions=False)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(6))
    assert Counter(r["label"] for r in rows) == {0: 3, 1: 3}
    names = dm.label_names
    assert all(r["label_name"] == names[r["label"]] and r["method"] == "dawgen" for r in rows)
    # every row says whether it was cut off at max_new_tokens, and predict's summary counts exactly those
    summary = json.loads((tmp_path / "samples.jsonl.summary.json").read_text())
    assert all(isinstance(r["hit_cap"], bool) for r in rows)
    assert (summary["samples"], summary["hit_cap"]) == (6, sum(r["hit_cap"] for r in rows))
    assert rows[0]["params"]["checkpoint"] != "untrained" and len({json.dumps(r["params"]) for r in rows}) == 1
    if task == "rte":
        real = {r["text_a"] for r in dm.rows}
        assert all(r["text_a"] in real and isinstance(r["text_b"], str) for r in rows)
    else:
        assert all(isinstance(r["text"], str) and "text_b" not in r for r in rows)
    # a sample depends only on its id: regenerating gives the same text
    again = module.generate(torch.tensor([rows[4]["label"]]), [sample_seed(0, 4, "dawgen")],
                            *(_context(dm, rows[4]["text_a"]) if task == "rte" else ()))
    assert again == [rows[4]["text_b" if task == "rte" else "text"]]


def _context(dm, text_a):
    from synthtune.components.padding import right_pad

    return right_pad([dm.encode_context(text_a)], dm.tokenizer.pad_token_id)


def test_bad_settings_get_one_line_errors(tiny_llama, tmp_path):
    with pytest.raises(SynthtuneError, match=r"lam \(λ\) must be a finite number >= 0"):
        DawGenModule(backbone=tiny_llama, lam=-0.1)
    with pytest.raises(SynthtuneError, match="exceeds the model's context of 512"):
        DawGenModule(backbone=tiny_llama, prompt_length=600)
    module, dm = make(tiny_llama, prompt_length=505)
    with pytest.raises(SynthtuneError, match="exceeds the model's context of 512"):
        trainer(tmp_path, max_steps=1).fit(module, dm)
    module, _ = make(tiny_llama, num_labels=3)
    with pytest.raises(SynthtuneError, match="has 2 labels but num_labels=3"):
        trainer(tmp_path, max_steps=1).fit(module, LabeledDataModule("sst2", backbone=tiny_llama))


@pytest.mark.parametrize("rule", ["adam", "sgd"])
def test_weight_optimizer_is_the_update_rule_of_the_weight_net(tiny_llama, rule):
    """Φ_W steps with the rule asked for, at weight_lr: SGD moves a weight by exactly -weight_lr · gradient."""
    module, _ = make(tiny_llama, weight_optimizer=rule, weight_lr=0.05)
    opt_w = module.configure_optimizers()[1]
    assert type(opt_w) is {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[rule]
    param = next(p for p in module.weight_net.parameters() if p.requires_grad)
    before = param.detach().clone()
    param.grad = torch.full_like(param, 1e-3)
    opt_w.step()
    step = (before - param.detach()).abs().max().item()
    # Adam's first step is about lr whatever the gradient's scale; SGD's is lr times the gradient
    assert step == pytest.approx(0.05 * 1e-3 if rule == "sgd" else 0.05, rel=1e-2)


def test_unknown_weight_optimizer_is_one_line(tiny_llama):
    with pytest.raises(SynthtuneError, match="unknown weight_optimizer 'lbfgs'; use adam or sgd"):
        DawGenModule(backbone=tiny_llama, prompt_length=3, weight_mlp_size=8, weight_optimizer="lbfgs")
