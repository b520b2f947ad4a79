import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from synthtune.components.prompt_tuning.gradient_surgery import combine, project_conflicting, surgery_step
from synthtune.components.dawgen.lookahead import all_reduce_grads
from synthtune.errors import SynthtuneError


def test_conflicting_vectors_are_projected_exactly():
    g_real = torch.tensor([1.0, 0.0])
    g_syn = torch.tensor([-1.0, 1.0])
    projected, conflicted = project_conflicting(g_syn, g_real)
    assert conflicted
    # (-1, 1) - (-1 / 1) * (1, 0) = (0, 1)
    assert torch.equal(projected, torch.tensor([0.0, 1.0]))
    assert float(torch.dot(projected, g_real)) == 0.0


def test_projection_is_orthogonal_for_random_conflicts():
    gen = torch.Generator().manual_seed(0)
    hits = 0
    for _ in range(50):
        g_real = torch.randn(3, 4, generator=gen, dtype=torch.float64)
        g_syn = torch.randn(3, 4, generator=gen, dtype=torch.float64)
        projected, conflicted = project_conflicting(g_syn, g_real)
        assert projected.shape == g_syn.shape
        assert conflicted == bool((g_syn * g_real).sum() < 0)
        if conflicted:
            hits += 1
            assert abs(float((projected * g_real).sum())) < 1e-12
    assert hits > 10


def test_orthogonal_and_agreeing_vectors_are_unchanged():
    g_real = torch.tensor([1.0, 0.0])
    for g_syn in (torch.tensor([0.0, 3.0]), torch.tensor([2.0, -5.0])):
        projected, conflicted = project_conflicting(g_syn, g_real)
        assert not conflicted
        assert torch.equal(projected, g_syn)


def test_zero_real_gradient_is_safe():
    projected, conflicted = project_conflicting(torch.tensor([1.0, -2.0]), torch.zeros(2))
    assert not conflicted
    assert torch.equal(projected, torch.tensor([1.0, -2.0]))


def test_combine_adds_weighted_projected_gradient():
    g_real = torch.tensor([2.0, 0.0])
    g_syn = torch.tensor([-1.0, 1.0])
    delta, conflicted = combine(g_real, g_syn, eps=0.5)
    assert conflicted
    assert torch.equal(delta, torch.tensor([2.0, 0.5]))
    delta, conflicted = combine(g_real, torch.tensor([1.0, 1.0]), eps=0.5)
    assert not conflicted
    assert torch.equal(delta, torch.tensor([2.5, 0.5]))


def test_bad_inputs_raise_one_line_errors():
    with pytest.raises(SynthtuneError, match="eps"):
        combine(torch.ones(2), torch.ones(2), eps=-0.1)
    with pytest.raises(SynthtuneError, match="equal size"):
        project_conflicting(torch.ones(2), torch.ones(3))
    p = nn.Parameter(torch.ones(2))
    with pytest.raises(SynthtuneError, match="requires_grad"):
        surgery_step([p, torch.ones(2)], p.sum(), p.sum(), eps=1.0)


class _PromptOnFrozen(nn.Module):
    """A trainable prompt vector added to the input of a frozen linear 'LM'."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.prompt = nn.Parameter(torch.randn(4))
        self.bias = nn.Parameter(torch.randn(2))
        self.frozen = nn.Linear(4, 2).requires_grad_(False)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((self.frozen(x + self.prompt) + self.bias - y) ** 2).mean()


def test_surgery_step_writes_delta_and_leaves_frozen_params_alone():
    model = _PromptOnFrozen()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=gen)
    y_real = torch.randn(6, 2, generator=gen)
    y_syn = -3 * y_real  # pulls the other way: the gradients conflict
    params = [model.prompt, model.bias]
    loss_real, loss_syn = model.loss(x, y_real), model.loss(x, y_syn)

    # Reference: plain autograd, flattened, then the formula by hand.
    gr = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_real, params, retain_graph=True)])
    gs = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_syn, params, retain_graph=True)])
    assert float(gr @ gs) < 0
    expected = gr + 0.7 * (gs - (gs @ gr) / (gr @ gr) * gr)

    stats = surgery_step(params, loss_real, loss_syn, eps=0.7)
    assert stats["conflict"] is True
    assert stats["cosine"] == pytest.approx(float(gr @ gs / (gr.norm() * gs.norm())), rel=1e-5)
    written = torch.cat([model.prompt.grad.reshape(-1), model.bias.grad.reshape(-1)])
    torch.testing.assert_close(written, expected)
    assert model.frozen.weight.grad is None and model.frozen.bias.grad is None


def test_without_projection_a_conflicting_step_is_the_plain_weighted_sum():
    # the paired update without surgery (prompt tuning's gradient_surgery: false) goes through the same function
    model = _PromptOnFrozen()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 4, generator=gen)
    y_real = torch.randn(6, 2, generator=gen)
    params = [model.prompt, model.bias]
    loss_real, loss_syn = model.loss(x, y_real), model.loss(x, -3 * y_real)
    gr = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_real, params, retain_graph=True)])
    gs = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_syn, params, retain_graph=True)])
    stats = surgery_step(params, loss_real, loss_syn, eps=0.7, project=False)
    assert stats["conflict"] is True  # what surgery would have projected
    assert stats["norm_syn_projected"] == pytest.approx(stats["norm_syn"])
    written = torch.cat([model.prompt.grad.reshape(-1), model.bias.grad.reshape(-1)])
    torch.testing.assert_close(written, gr + 0.7 * gs)


def test_surgery_step_without_conflict_is_plain_sum():
    model = _PromptOnFrozen()
    x = torch.randn(5, 4)
    y = torch.randn(5, 2)
    params = [model.prompt, model.bias]
    loss_real, loss_syn = model.loss(x, y), model.loss(x, y + 0.01)
    gr = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_real, params, retain_graph=True)])
    gs = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_syn, params, retain_graph=True)])
    stats = surgery_step(params, loss_real, loss_syn, eps=2.0)
    assert stats["conflict"] is False and stats["cosine"] > 0.9
    written = torch.cat([model.prompt.grad.reshape(-1), model.bias.grad.reshape(-1)])
    torch.testing.assert_close(written, gr + 2.0 * gs)


# --- two-process gloo check: per-rank halves + all-reduce == one process on the whole batch ---

def _batch():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(8, 4, generator=gen, dtype=torch.float64)
    d = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        model = _model()
        pred = model.frozen(x + model.prompt) + model.bias
    # Residuals chosen so the global gradients conflict, rank 0's halves conflict and rank 1's do
    # not: projecting per rank and then averaging gives a different answer from the global one.
    y_real = pred + d
    y_syn = pred + torch.cat([-4 * d[:4], 0.5 * d[4:]])
    return x, y_real, y_syn


def _model():
    return _PromptOnFrozen().double()


def _worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        x, y_real, y_syn = _batch()
        half = slice(rank * 4, rank * 4 + 4)
        results = {}
        for mode in ("global", "per_rank"):
            model = _model()
            params = [model.prompt, model.bias]
            loss_real = model.loss(x[half], y_real[half])
            loss_syn = model.loss(x[half], y_syn[half])
            if mode == "global":
                surgery_step(params, loss_real, loss_syn, eps=1.0)
            else:  # the wrong way: project locally, then average the updates
                surgery_step(params, loss_real, loss_syn, eps=1.0, all_reduce=False)
                for p in params:
                    dist.all_reduce(p.grad)
                    p.grad /= world
            results[mode] = {"prompt": model.prompt.grad, "bias": model.bias.grad}
        # lookahead.all_reduce_grads averages .grad; a missing grad on one rank counts as zeros.
        a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(1, 2))
        a.grad = torch.tensor([1.0, 2.0]) * (rank + 1)
        if rank == 0:
            b.grad = torch.tensor([[4.0, 8.0]])
        all_reduce_grads([a, b])
        results["all_reduce_grads"] = {"a": a.grad, "b": b.grad}
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_matches_single_process(tmp_path):
    x, y_real, y_syn = _batch()
    model = _model()
    stats = surgery_step([model.prompt, model.bias], model.loss(x, y_real), model.loss(x, y_syn), eps=1.0)
    assert stats["conflict"]
    single = {"prompt": model.prompt.grad, "bias": model.bias.grad}

    out = tmp_path / "grads"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]
    for key in single:
        for rank in ranks:
            torch.testing.assert_close(rank["global"][key], single[key], rtol=1e-10, atol=1e-12)
    # Projecting per rank then averaging is a different (wrong) update on this batch.
    assert not torch.allclose(ranks[0]["per_rank"]["prompt"], single["prompt"], rtol=1e-4, atol=1e-6)
    for rank in ranks:
        assert torch.equal(rank["all_reduce_grads"]["a"], torch.tensor([1.5, 3.0]))
        assert torch.equal(rank["all_reduce_grads"]["b"], torch.tensor([[2.0, 4.0]]))
