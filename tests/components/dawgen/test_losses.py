import math

import pytest
import torch

from synthtune.components.dawgen.losses import (
    dawgen_objective,
    discriminative_loss,
    distribution_hinge_loss,
    weighted_generation_loss,
)
from synthtune.components.dawgen.token_weights import TokenWeightNet
from synthtune.errors import SynthtuneError


def test_discriminative_loss_matches_hand_computation():
    # Example 0 (label 0): Pr under Q_0 = (0.2, 0.5), under Q_1 = (0.6, 0.5)
    #   ratios Pr_y / Σ Pr = 0.2/0.8 = 0.25 and 0.5/1.0 = 0.5
    # Example 1 (label 1): token 0 Pr = (0.1, 0.3) -> 0.3/0.4 = 0.75; token 1 is padding.
    # L_disc = −(0.25 + 0.5 + 0.75) / 3 = −0.5
    probs = torch.tensor([
        [[0.2, 0.5], [0.6, 0.5]],
        [[0.1, 0.9], [0.3, 0.01]],
    ], dtype=torch.float64)
    labels = torch.tensor([0, 1])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss = discriminative_loss(probs.log(), labels, mask)
    assert float(loss) == pytest.approx(-0.5, abs=1e-12)


def test_discriminative_loss_is_stable_for_tiny_probabilities():
    logp = torch.tensor([[[-2000.0], [-2001.0]]], dtype=torch.float64)  # exp underflows to 0
    loss = discriminative_loss(logp, torch.tensor([0]), torch.ones(1, 1))
    assert float(loss) == pytest.approx(-1 / (1 + math.exp(-1)), rel=1e-12)


def test_weighted_generation_loss_hand_example():
    logp = torch.tensor([[-1.0, -2.0, -9.0], [-3.0, -4.0, -5.0]])
    weights = torch.tensor([[2.0, 0.5, 7.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    # −(2·−1 + 0.5·−2 + 1·−3 + 1·−4 + 1·−5) / 5 = 15 / 5 = 3
    assert float(weighted_generation_loss(logp, weights, mask)) == pytest.approx(3.0)
    uniform = torch.ones_like(logp)
    assert float(weighted_generation_loss(logp, uniform, mask)) == pytest.approx(15.0 / 5)
    with pytest.raises(SynthtuneError, match="no valid tokens"):
        weighted_generation_loss(logp, weights, torch.zeros(2, 3))


def test_distribution_hinge_is_zero_when_margins_hold():
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # Same-label similarity 1, different-label similarity 0: 1 − 1 + 0 = 0 for every triplet.
    assert float(distribution_hinge_loss(z, labels)) == 0.0


def test_distribution_hinge_positive_when_violated_and_hand_checked():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    # anchor 0: pos 1 (sim 0), neg 2 (sim 1) -> 1 − 0 + 1 = 2; anchor 1: pos 0 (0), neg 2 (0) -> 1
    # anchor 2 has no positive. Mean = 1.5
    assert float(distribution_hinge_loss(z, labels)) == pytest.approx(1.5)
    # Projecting onto one axis (x + y) makes all three collinear: every similarity is 1 -> 1 − 1 + 1 = 1.
    w = torch.tensor([[1.0], [1.0]])
    assert float(distribution_hinge_loss(z, labels, w_proj=w)) == pytest.approx(1.0)


def test_distribution_hinge_gradient_pulls_same_labels_together():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    before = distribution_hinge_loss(z, labels)
    assert float(before.detach()) > 0
    before.backward()
    after = distribution_hinge_loss(z.detach() - 0.5 * z.grad, labels)
    assert float(after) < float(before.detach())


def test_distribution_hinge_without_triplets_is_zero_in_graph():
    z = torch.randn(3, 2, requires_grad=True)
    loss = distribution_hinge_loss(z, torch.tensor([1, 1, 1]))
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_dawgen_objective_and_negative_lambda():
    assert float(dawgen_objective(torch.tensor(2.0), torch.tensor(3.0), 0.5)) == 3.5
    with pytest.raises(SynthtuneError, match="lambda"):
        dawgen_objective(torch.tensor(2.0), torch.tensor(3.0), -0.1)


def test_token_weights_are_normalised_over_valid_tokens():
    torch.manual_seed(0)
    net = TokenWeightNet(hidden_size=8, mlp_size=5, zero_init=False)
    hidden = torch.randn(3, 4, 8)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    w = net(hidden, mask).detach()
    assert w.shape == (3, 4)
    assert torch.all(w[mask == 0] == 0)
    assert torch.all(w[mask == 1] > 0)
    assert float(w.sum()) == pytest.approx(float(mask.sum()), rel=1e-5)
    assert float(w[mask == 1].std()) > 1e-3  # a random net does not weigh uniformly
    # Softmax of the scores over the valid tokens, times their count.
    scores = net.scores(hidden).detach()[mask == 1]
    torch.testing.assert_close(w[mask == 1], torch.softmax(scores, 0) * 9)


def test_pinned_tokens_weigh_one_and_the_rest_share_their_own_count():
    torch.manual_seed(0)
    net = TokenWeightNet(hidden_size=8, mlp_size=5, zero_init=False)
    hidden = torch.randn(2, 4, 8, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    fixed = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 1]])  # the pad at [0, 3] stays 0 even if marked
    w = net(hidden, mask, fixed)
    assert w[0, 2] == 1 and w[1, 3] == 1 and w[0, 3] == 0
    free = (mask == 1) & (fixed == 0)
    scores = net.scores(hidden).detach()[free]
    torch.testing.assert_close(w.detach()[free], torch.softmax(scores, 0) * 5)
    grad, = torch.autograd.grad(w[0, 2] + w[1, 3], hidden, allow_unused=True)
    assert grad is None or float(grad.abs().sum()) == 0.0  # a pinned weight does not depend on Φ_W
    assert torch.equal(net(hidden, mask, torch.ones_like(mask)), mask.float())  # everything pinned


def test_token_weights_start_uniform_and_uniform_mode():
    hidden = torch.randn(2, 3, 8)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(TokenWeightNet(8)(hidden, mask), mask.float())
    assert torch.equal(TokenWeightNet(8, mode="uniform", zero_init=False)(hidden, mask), mask.float())
    with pytest.raises(SynthtuneError, match="mode"):
        TokenWeightNet(8, mode="attention")
    with pytest.raises(SynthtuneError, match="no valid tokens"):
        TokenWeightNet(8)(hidden, torch.zeros(2, 3))


def test_weighted_generation_loss_averages_per_label_then_over_labels():
    """E_l[L_wGen(Q_l)]: label 0 has 1 valid token, label 1 has 4; each label counts once."""
    logp = torch.tensor([[-1.0, -9.0, -9.0], [-2.0, -4.0, -9.0], [-6.0, -8.0, -9.0]])
    weights = torch.tensor([[2.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.5, 1.0, 1.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]])
    labels = torch.tensor([0, 1, 1])
    label0 = 2.0  # −(2·−1)/1
    label1 = (2.0 + 4.0 + 3.0 + 8.0) / 4  # −(−2 −4 −0.5·6 −8)/4
    got = weighted_generation_loss(logp, weights, mask, labels)
    assert float(got) == pytest.approx((label0 + label1) / 2)
    # The pooled token mean differs: (2 + 17) / 5.
    assert float(weighted_generation_loss(logp, weights, mask)) == pytest.approx(19.0 / 5)
    # A label that is absent from the batch does not count as a zero.
    assert float(weighted_generation_loss(logp[1:], weights[1:], mask[1:], labels[1:])) == pytest.approx(label1)
    with pytest.raises(SynthtuneError, match="one label per row"):
        weighted_generation_loss(logp, weights, mask, labels[:2])
