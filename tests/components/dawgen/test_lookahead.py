import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from synthtune.components.dawgen.losses import (
    dawgen_objective,
    discriminative_loss,
    distribution_hinge_loss,
    weighted_generation_loss,
)
from synthtune.components.dawgen.lookahead import all_reduce_grads, meta_gradient, optimizer_update, virtual_step
from synthtune.components.dawgen.token_weights import TokenWeightNet
from synthtune.errors import SynthtuneError

V, D, L, B, T = 7, 4, 2, 4, 6
LR = 0.7


class ToyPrompts(nn.Module):
    """Per-label prompt vectors added to the context of a fixed random bigram 'LM'."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.prompt = nn.Parameter(0.3 * torch.randn(L, D, generator=gen, dtype=torch.float64))
        self.register_buffer("emb", torch.randn(V, D, generator=gen, dtype=torch.float64))
        self.register_buffer("out", torch.randn(D, V, generator=gen, dtype=torch.float64))

    def forward(self, x: torch.Tensor, labels: torch.Tensor, pooled: bool = False) -> torch.Tensor:
        if pooled:  # Z_i: a pooled representation that depends on the label's prompt
            return self.emb[x].mean(1) + 2 * self.prompt[labels]
        return toy_logprobs(self.prompt, self.emb, self.out, x, labels)


def toy_logprobs(prompt, emb, out, x, labels):
    """log Pr(x_{j+1} | x_j; prompt_label) for j = 0..T-2, shape [B, T-1]."""
    z = (emb[x[:, :-1]] + prompt[labels].unsqueeze(1)) @ out
    return F.log_softmax(z, -1).gather(-1, x[:, 1:].unsqueeze(-1)).squeeze(-1)


def toy_data():
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, V, (B, T), generator=gen)
    labels = torch.tensor([0, 1, 0, 1])
    mask = torch.ones(B, T - 1)
    mask[1, -2:] = 0
    mask[3, -1] = 0
    return x, labels, mask


def make_weight_net():
    torch.manual_seed(3)
    return TokenWeightNet(D, mlp_size=3, zero_init=False).double()


def inner_loss_factory(model, x, labels, mask, lam):
    """L_DawGen = L_wGen + λ L_dist; ``call_q`` is the module itself or its functional_call twin."""
    hidden = model.emb[x[:, 1:]]

    def inner(call_q, wnet):
        l_wgen = weighted_generation_loss(call_q(x, labels), wnet(hidden, mask), mask)
        if lam == 0:
            return l_wgen
        return dawgen_objective(l_wgen, distribution_hinge_loss(call_q(x, labels, pooled=True), labels), lam)

    return inner


def outer_loss_factory(x, labels, mask):
    def outer(call_q):
        all_labels = torch.stack([call_q(x, torch.full_like(labels, l)) for l in range(L)], dim=1)
        return discriminative_loss(all_labels, labels, mask)

    return outer


def manual_meta_gradient(model, wnet, x, labels, mask):
    """The same quantity by hand: analytic ∇_Q L_wGen, explicit P', one first-order autograd call."""
    weights = wnet(model.emb[x[:, 1:]], mask)
    z = (model.emb[x[:, :-1]] + model.prompt.detach()[labels].unsqueeze(1)) @ model.out
    probs = torch.softmax(z, -1)
    onehot = F.one_hot(x[:, 1:], V).double()
    n = mask.sum()
    # d log p_ij / d prompt[y_i] = out @ (onehot_ij − p_ij)
    per_token = (onehot - probs) @ model.out.T  # [B, T-1, D]
    coeff = -(weights * mask) / n  # dL/dlogp_ij
    grad_prompt = torch.zeros(L, D, dtype=torch.float64)
    for lab in range(L):
        rows = labels == lab
        grad_prompt[lab] = (coeff[rows].unsqueeze(-1) * per_token[rows]).sum((0, 1))
    new_prompt = model.prompt.detach() - LR * grad_prompt
    all_labels = torch.stack(
        [toy_logprobs(new_prompt, model.emb, model.out, x, torch.full_like(labels, l)) for l in range(L)], dim=1
    )
    outer = discriminative_loss(all_labels, labels, mask)
    return dict(zip(dict(wnet.named_parameters()), torch.autograd.grad(outer, list(wnet.parameters()))))


def test_meta_gradient_equals_manual_unrolled_computation():
    model, wnet = ToyPrompts(), make_weight_net()
    x, labels, mask = toy_data()
    before = model.prompt.detach().clone()
    result = meta_gradient(
        model, wnet, inner_loss_factory(model, x, labels, mask, 0.0), outer_loss_factory(x, labels, mask), LR
    )
    expected = manual_meta_gradient(model, wnet, x, labels, mask)
    assert set(result.grads) == set(expected)
    for name in expected:
        torch.testing.assert_close(result.grads[name], expected[name], rtol=1e-9, atol=1e-12)
    assert sum(float(g.norm()) for g in result.grads.values()) > 1e-4
    # Nothing was mutated and no .grad was written.
    assert torch.equal(model.prompt.detach(), before)
    assert model.prompt.grad is None and list(wnet.parameters()) and all(p.grad is None for p in wnet.parameters())


def _outer_after_virtual_step(model, wnet, x, labels, mask, lam):
    """L_disc(Q'(W)) for the current W, computed without any second-order graph."""
    inner = inner_loss_factory(model, x, labels, mask, lam)(model, wnet)
    (g,) = torch.autograd.grad(inner, [model.prompt])
    new_prompt = model.prompt.detach() - LR * g
    all_labels = torch.stack(
        [toy_logprobs(new_prompt, model.emb, model.out, x, torch.full_like(labels, l)) for l in range(L)], dim=1
    )
    return float(discriminative_loss(all_labels, labels, mask))


def test_meta_gradient_matches_central_finite_differences():
    model, wnet = ToyPrompts(), make_weight_net()
    x, labels, mask = toy_data()
    result = meta_gradient(
        model, wnet, inner_loss_factory(model, x, labels, mask, 0.3), outer_loss_factory(x, labels, mask), LR,
        write_grad=True,
    )
    h = 1e-6
    for name, p in wnet.named_parameters():
        numeric = torch.zeros_like(p)
        flat = p.data.view(-1)
        for k in range(flat.numel()):
            old = float(flat[k])
            flat[k] = old + h
            plus = _outer_after_virtual_step(model, wnet, x, labels, mask, 0.3)
            flat[k] = old - h
            minus = _outer_after_virtual_step(model, wnet, x, labels, mask, 0.3)
            flat[k] = old
            numeric.view(-1)[k] = (plus - minus) / (2 * h)
        torch.testing.assert_close(result.grads[name], numeric, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(p.grad, result.grads[name])  # write_grad stored it


def test_virtual_step_arithmetic_and_errors():
    params = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0])}
    out = virtual_step(params, {"a": torch.tensor([0.5, -1.0]), "b": None}, lr=2.0)
    assert torch.equal(out["a"], torch.tensor([0.0, 4.0]))
    assert out["b"] is params["b"]
    with pytest.raises(SynthtuneError, match="learning rate"):
        virtual_step(params, {"a": None, "b": None}, lr=-1.0)
    with pytest.raises(SynthtuneError, match="one gradient per parameter"):
        virtual_step(params, {"a": None}, lr=1.0)


def test_all_reduce_grads_is_a_noop_without_distributed():
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.tensor([1.0, 2.0, 3.0])
    all_reduce_grads([p])
    assert torch.equal(p.grad, torch.tensor([1.0, 2.0, 3.0]))


def test_all_reduce_grads_through_a_one_rank_gloo_group(tmp_path):
    # The two-rank average is checked in test_gradient_surgery's gloo workers (no second spawn here).
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1, 2))
        frozen = torch.zeros(3)
        a.grad = torch.tensor([1.0, 2.0])
        all_reduce_grads([a, b, frozen])
        assert torch.equal(a.grad, torch.tensor([1.0, 2.0]))
        assert torch.equal(b.grad, torch.zeros(1, 2))  # a missing grad takes part as zeros
        assert frozen.grad is None
    finally:
        dist.destroy_process_group()


class SoftPromptLM(nn.Module):
    """Per-label soft prompts [L, t, d] prepended to the real tokens' embeddings of a frozen LM."""

    def __init__(self, lm: nn.Module, n_labels: int, length: int):
        super().__init__()
        self.lm = lm
        d = lm.get_input_embeddings().embedding_dim
        self.prompts = nn.Parameter(0.1 * torch.randn(n_labels, length, d))

    def forward(self, input_ids, attention_mask, labels):
        t = self.prompts.shape[1]
        embeds = torch.cat([self.prompts[labels], self.lm.get_input_embeddings()(input_ids)], dim=1)
        mask = torch.cat([torch.ones(len(labels), t, dtype=attention_mask.dtype), attention_mask], dim=1)
        logits = self.lm(inputs_embeds=embeds, attention_mask=mask).logits
        # Real token j is predicted at position t + j − 1 (the last prompt slot predicts token 0).
        pred = logits[:, t - 1:t - 1 + input_ids.shape[1]]
        return F.log_softmax(pred.float(), -1).gather(-1, input_ids.unsqueeze(-1)).squeeze(-1)


def test_meta_gradient_through_a_tiny_hf_model(tiny_llama):
    from synthtune.components.backbone import load_backbone

    backbone = load_backbone(tiny_llama)
    tok = backbone.tokenizer
    enc = tok(["A farmer has 3 cows.", "How many apples are left?", "She sells 12 eggs."],
              return_tensors="pt", padding=True, padding_side="right")
    labels = torch.tensor([0, 1, 0])
    torch.manual_seed(0)
    module = SoftPromptLM(backbone.model, n_labels=2, length=3)
    wnet = TokenWeightNet(backbone.hidden_size, mlp_size=8)
    hidden = backbone.model.get_input_embeddings()(enc.input_ids).detach()
    mask = enc.attention_mask

    def inner(call_q, weight_net):
        lp = call_q(enc.input_ids, mask, labels)
        return weighted_generation_loss(lp, weight_net(hidden, mask), mask)

    def outer(call_q):
        lps = torch.stack([call_q(enc.input_ids, mask, torch.full_like(labels, l)) for l in range(2)], dim=1)
        return discriminative_loss(lps, labels, mask)

    result = meta_gradient(module, wnet, inner, outer, inner_lr=1.0)
    flat = torch.cat([g.reshape(-1) for g in result.grads.values()])
    assert torch.isfinite(flat).all()
    assert float(flat.norm()) > 0
    assert torch.isfinite(result.outer_loss)
    assert all(p.grad is None for p in backbone.model.parameters())
    assert not any(p.requires_grad for p in backbone.model.parameters())
    assert module.prompts.grad is None


@pytest.mark.parametrize("make_opt", [
    lambda ps: torch.optim.SGD(ps, lr=0.3),
    lambda ps: torch.optim.SGD(ps, lr=0.2, momentum=0.9, dampening=0.1, weight_decay=0.01),
    lambda ps: torch.optim.SGD(ps, lr=0.2, momentum=0.8, nesterov=True),
    lambda ps: torch.optim.Adam(ps, lr=0.05, betas=(0.8, 0.95), weight_decay=0.01),
    lambda ps: torch.optim.AdamW(ps, lr=0.05, weight_decay=0.1),
], ids=["sgd", "sgd-momentum", "sgd-nesterov", "adam", "adamw"])
def test_optimizer_update_equals_the_real_optimizer_step(make_opt):
    """Alg. 1's lookahead is the real update: U(Q, g) == Q after optimizer.step() with gradient g,
    also after a few steps have filled the momentum buffer / moments."""
    model = ToyPrompts()
    x, labels, mask = toy_data()
    opt = make_opt([model.prompt])
    params = {"prompt": model.prompt}

    def loss() -> torch.Tensor:
        return -toy_logprobs(model.prompt, model.emb, model.out, x, labels).mean()

    for _ in range(3):  # fill the optimizer state first
        opt.zero_grad()
        loss().backward()
        opt.step()
    (g,) = torch.autograd.grad(loss(), [model.prompt])
    virtual = optimizer_update(opt, params)(params, {"prompt": g})["prompt"]
    assert not torch.allclose(virtual, model.prompt)  # it moves
    opt.zero_grad()
    model.prompt.grad = g.clone()
    opt.step()
    torch.testing.assert_close(virtual.detach(), model.prompt.detach(), rtol=1e-12, atol=1e-12)


def test_optimizer_update_is_differentiable_and_its_own_step_size_unless_given():
    p = nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.5)
    w = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    g = w * torch.tensor([1.0, 1.0], dtype=torch.float64)
    out = optimizer_update(opt, {"p": p})({"p": p}, {"p": g})["p"]
    torch.testing.assert_close(out.detach(), torch.tensor([-0.5, -3.5], dtype=torch.float64))
    (dw,) = torch.autograd.grad(out.sum(), [w])
    assert float(dw) == pytest.approx(-1.0)  # d/dw Σ(p − 0.5 w) = −0.5·2
    other = optimizer_update(opt, {"p": p}, lr=1.0)({"p": p}, {"p": g})["p"]
    torch.testing.assert_close(other.detach(), torch.tensor([-2.0, -5.0], dtype=torch.float64))
    with pytest.raises(SynthtuneError, match="no differentiable lookahead"):
        optimizer_update(torch.optim.RMSprop([p]), {"p": p})
    with pytest.raises(SynthtuneError, match="not in the generator optimizer"):
        optimizer_update(opt, {"q": nn.Parameter(torch.zeros(1))})


def test_meta_gradient_through_the_adam_update_matches_finite_differences():
    """With U = the Adam step (moments filled), ∂ L_disc(U(Q, ∇L(Q; W))) / ∂W is the true derivative."""
    model, wnet = ToyPrompts(), make_weight_net()
    x, labels, mask = toy_data()
    opt = torch.optim.Adam([model.prompt], lr=0.05)
    for _ in range(2):
        opt.zero_grad()
        (-toy_logprobs(model.prompt, model.emb, model.out, x, labels).mean()).backward()
        opt.step()
    update = optimizer_update(opt, {"prompt": model.prompt})
    inner = inner_loss_factory(model, x, labels, mask, 0.0)
    outer = outer_loss_factory(x, labels, mask)
    result = meta_gradient(model, wnet, inner, outer, update)

    def outer_value() -> float:
        (g,) = torch.autograd.grad(inner(model, wnet), [model.prompt])
        new = update({"prompt": model.prompt}, {"prompt": g})["prompt"].detach()
        lps = torch.stack([toy_logprobs(new, model.emb, model.out, x, torch.full_like(labels, l)) for l in range(L)], 1)
        return float(discriminative_loss(lps, labels, mask))

    h = 1e-6
    name, p = next(iter(wnet.named_parameters()))
    flat = p.data.view(-1)
    for k in range(min(flat.numel(), 4)):
        old = float(flat[k])
        flat[k] = old + h
        plus = outer_value()
        flat[k] = old - h
        minus = outer_value()
        flat[k] = old
        assert float(result.grads[name].view(-1)[k]) == pytest.approx((plus - minus) / (2 * h), rel=1e-4, abs=1e-9)
