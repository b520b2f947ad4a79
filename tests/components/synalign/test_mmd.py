"""Weighted MMD²: brute-force agreement, zero for identical sets, bandwidth rules, errors, minibatches."""

import math

import pytest
import torch

from synthtune.components.synalign.mmd import (
    label_conditional_mmd2,
    median_heuristic,
    mmd2_minibatch,
    rbf_kernel,
    resolve_bandwidths,
    weighted_mmd2,
)
from synthtune.errors import SynthtuneError


def _rand(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + shift


def _brute_mmd2(syn, real, w, bandwidths):
    def k(a, b):
        sq = sum((float(a[t]) - float(b[t])) ** 2 for t in range(len(a)))
        return sum(math.exp(-sq / (2 * h * h)) for h in bandwidths) / len(bandwidths)

    m = len(real)
    total = 0.0
    for i in range(len(syn)):
        for j in range(len(syn)):
            total += w[i] * w[j] * k(syn[i], syn[j])
    for i in range(len(syn)):
        for j in range(m):
            total -= 2.0 * w[i] * k(syn[i], real[j]) / m
    for i in range(m):
        for j in range(m):
            total += k(real[i], real[j]) / (m * m)
    return total


@pytest.mark.parametrize("bandwidths", [[1.3], [0.7, 1.4, 2.8]])
def test_matches_brute_force_unweighted_and_weighted(bandwidths):
    syn, real = _rand(7, 3, 0), _rand(5, 3, 1, shift=0.5)
    uniform = [1.0 / 7] * 7
    got = float(weighted_mmd2(syn, real, bandwidths))
    assert got == pytest.approx(_brute_mmd2(syn, real, uniform, bandwidths), rel=1e-9, abs=1e-12)
    w = torch.tensor([0.3, 0.05, 0.2, 0.1, 0.15, 0.0, 0.2], dtype=torch.float64)
    got_w = float(weighted_mmd2(syn, real, bandwidths, w))
    assert got_w == pytest.approx(_brute_mmd2(syn, real, w.tolist(), bandwidths), rel=1e-9, abs=1e-12)
    assert got_w != pytest.approx(got, rel=1e-3)


def test_zero_for_identical_sets_and_positive_for_shifted():
    x = _rand(40, 5, 2)
    assert abs(float(weighted_mmd2(x, x.clone(), [1.0]))) < 1e-12
    assert float(weighted_mmd2(x, _rand(40, 5, 3, shift=1.0), [2.0])) > 0.05


def test_gradient_flows_to_weights():
    syn, real = _rand(6, 2, 4), _rand(6, 2, 5)
    w = torch.full((6,), 1 / 6, dtype=torch.float64, requires_grad=True)
    weighted_mmd2(syn, real, [1.0], w).backward()
    assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_median_heuristic_and_mixture():
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    # distances 3, 4, 5 -> median 4
    assert median_heuristic(x) == pytest.approx(4.0)
    # x pooled with itself: 15 distances = three 0s and four each of 3, 4, 5 -> median 4
    assert resolve_bandwidths("median", x, x) == pytest.approx([4.0])
    mix = resolve_bandwidths("mixture", x[:2], x[2:])
    assert mix == pytest.approx([2.0, 4.0, 8.0])
    assert resolve_bandwidths(0.5, x, x) == [0.5]
    assert resolve_bandwidths([1, 2], x, x) == [1.0, 2.0]


def test_identical_embeddings_raise():
    x = torch.ones(10, 4)
    with pytest.raises(SynthtuneError, match="all identical"):
        resolve_bandwidths("median", x, x.clone())


@pytest.mark.parametrize("spec", [0.0, -1.0, [1.0, 0.0], "silverman"])
def test_bad_bandwidth_spec(spec):
    x = _rand(4, 2, 0)
    with pytest.raises(SynthtuneError):
        resolve_bandwidths(spec, x, x)


def test_dimension_mismatch_raises():
    with pytest.raises(SynthtuneError, match="dimension 4 but real ones 3"):
        weighted_mmd2(_rand(5, 4, 0), _rand(5, 3, 1), [1.0])
    with pytest.raises(SynthtuneError, match="dimension"):
        mmd2_minibatch(_rand(5, 4, 0), _rand(5, 3, 1), [1.0])


def test_weight_shape_checked():
    with pytest.raises(SynthtuneError, match="weights must have shape"):
        weighted_mmd2(_rand(5, 2, 0), _rand(5, 2, 1), [1.0], torch.ones(4))


def test_minibatch_estimate_close_to_full():
    syn, real = _rand(600, 4, 6).float(), _rand(500, 4, 7, shift=0.4).float()
    bw = [2.0]
    w = torch.rand(600, generator=torch.Generator().manual_seed(0))
    full = float(weighted_mmd2(syn, real, bw, w / w.sum()))
    est = mmd2_minibatch(syn, real, bw, weights=w, batch_syn=300, batch_real=250, num_batches=20, seed=0)
    assert est == pytest.approx(full, rel=0.15)
    # a full-size batch is exact
    exact = mmd2_minibatch(syn, real, bw, weights=w, batch_syn=10_000, batch_real=10_000, num_batches=1)
    assert exact == pytest.approx(full, rel=1e-5)


def test_rbf_kernel_diagonal_is_one():
    x = _rand(5, 3, 0)
    k = rbf_kernel(x, x, [0.5, 1.0])
    assert torch.allclose(torch.diagonal(k), torch.ones(5, dtype=torch.float64))


def test_label_conditional_mmd2_is_the_share_weighted_sum_of_per_label_brute_force_mmd2():
    syn, real = _rand(9, 3, 1), _rand(7, 3, 2, shift=0.5)
    syn_y = torch.tensor([0, 1, 0, 2, 1, 0, 2, 0, 1])
    real_y = torch.tensor([1, 0, 0, 1, 0, 1, 1])  # label 2 has no real rows: left out, shares renormalised
    scores = torch.tensor([0.3, -1.0, 2.0, 0.0, 0.5, -0.2, 1.0, 0.7, 0.1], dtype=torch.float64, requires_grad=True)
    bw = [0.8, 1.6]
    k = {name: rbf_kernel(a, b, bw) for name, (a, b) in {"ss": (syn, syn), "sr": (syn, real), "rr": (real, real)}.items()}
    value = label_conditional_mmd2(k["ss"], k["sr"], k["rr"], scores, syn_y, real_y)
    expected, sizes = 0.0, {0: 4, 1: 3}
    for c, n_c in sizes.items():
        s, r = (syn_y == c).nonzero().squeeze(1), (real_y == c).nonzero().squeeze(1)
        w = torch.softmax(scores.detach()[s], 0).tolist()
        expected += n_c / 7 * _brute_mmd2(syn[s].tolist(), real[r].tolist(), w, bw)
    assert float(value.detach()) == pytest.approx(expected, rel=1e-9)
    value.backward()
    assert scores.grad[3] == 0 and scores.grad[6] == 0 and scores.grad[0] != 0  # label 2 gets no gradient
