"""GP exploration sampling: far-before-near, seeding, per-label budgets, gpytorch equivalence, errors."""

import pytest
import torch

from helpers import one_thread, random_pool  # noqa: F401 (one_thread: an autouse fixture)
from synthtune.components.synalign.gp_sampler import (
    IncrementalGPVariance,
    exact_posterior_variance,
    gp_select,
    split_budget,
)
from synthtune.errors import SynthtuneError


def _pool(n: int = 200, d: int = 6, seed: int = 0) -> torch.Tensor:
    return random_pool(n, d, seed)


def test_far_point_is_picked_before_near_point():
    # A tight cluster, a point near it (row 3) and a point far away (row 4).
    cluster = torch.tensor([[0.0, 0.0], [0.05, 0.0], [0.0, 0.05]])
    x = torch.cat([cluster, torch.tensor([[0.4, 0.0]]), torch.tensor([[3.0, 3.0]])])
    labels = [0, 0, 0, 0, 0]
    started_in_cluster = 0
    for seed in range(10):
        sel = gp_select(x, 5, labels=labels, tau=0.5, seed=seed)
        order = sel.indices
        if order[0] < 3:
            started_in_cluster += 1
            assert order[1] == 4 and order.index(4) < order.index(3), (seed, order)
        assert sorted(order) == [0, 1, 2, 3, 4]
        # variances at pick time never increase (greedy max of a shrinking function)
        vars_ = [s.variance for s in sel.steps]
        assert len(vars_) == 5 and all(a >= b - 1e-9 for a, b in zip(vars_, vars_[1:]))
    assert started_in_cluster >= 3


def test_reproducible_by_seed_and_seed_matters():
    x = _pool(300)
    a = gp_select(x, 30, tau=1.0, seed=7)
    b = gp_select(x, 30, tau=1.0, seed=7)
    assert a.indices == b.indices
    firsts = {gp_select(x, 2, tau=1.0, seed=s).indices[0] for s in range(8)}
    assert len(firsts) > 1


def test_ties_are_broken_by_the_seeded_rng():
    # Tiny tau: every unpicked point has prior variance 1 exactly, so every pick is a tie.
    x = _pool(50, 3) * 100.0
    a = gp_select(x, 10, tau=1e-3, seed=1)
    b = gp_select(x, 10, tau=1e-3, seed=1)
    c = gp_select(x, 10, tau=1e-3, seed=2)
    assert a.indices == b.indices and a.indices != c.indices
    assert all(s.num_ties > 1 for s in a.steps[1:])
    assert len(set(a.indices)) == 10


def test_average_budget_per_label():
    x = _pool(120)
    labels = torch.tensor([0] * 50 + [1] * 40 + [2] * 30)
    sel = gp_select(x, 11, labels=labels, tau=1.5, seed=0)
    assert sel.budgets == {0: 4, 1: 4, 2: 3}
    picked = labels[sel.indices].tolist()
    assert [picked.count(k) for k in (0, 1, 2)] == [4, 4, 3]
    assert len(set(sel.indices)) == 11
    assert [s.label for s in sel.steps] == picked
    # round-robin: the first three picks are one per label
    assert sorted(picked[:3]) == [0, 1, 2]


def test_labels_are_explored_independently():
    # One GP per label: the label-0 picks of a labelled run equal a run on the label-0 rows alone
    # (same seed, so the same random first pick; no ties afterwards on generic points).
    x = _pool(80)
    labels = torch.tensor([0] * 40 + [1] * 40)
    joint = gp_select(x, 10, labels=labels, tau=1.5, seed=3)
    alone = gp_select(x[:40], 5, tau=1.5, seed=3)
    assert [i for i in joint.indices if i < 40] == alone.indices


def test_incremental_variance_equals_gpytorch():
    x = _pool(60, 4, seed=1)
    chosen = [5, 17, 2, 40, 33, 8]
    inc = IncrementalGPVariance(x, tau=1.3, noise=1e-3, capacity=len(chosen))
    for k, i in enumerate(chosen):
        inc.add(i)
        ref = exact_posterior_variance(x[chosen[: k + 1]], x, tau=1.3, noise=1e-3)
        assert torch.allclose(inc.variance, ref, atol=1e-6), (k, (inc.variance - ref).abs().max())
    # the variance at a selected point is about the noise level, far points keep ~ prior 1
    assert float(inc.variance[chosen].max()) < 2e-3


def test_incremental_and_exact_methods_select_the_same():
    x = _pool(80, 5, seed=2)
    a = gp_select(x, 12, tau=1.2, seed=4, method="incremental")
    b = gp_select(x, 12, tau=1.2, seed=4, method="exact")
    assert a.indices == b.indices
    for sa, sb in zip(a.steps, b.steps):
        assert abs(sa.variance - sb.variance) < 1e-6


@pytest.mark.parametrize("tau", [0.0, -1.0, float("nan")])
def test_bad_tau(tau):
    with pytest.raises(SynthtuneError, match="tau"):
        gp_select(_pool(10), 3, tau=tau)


def test_too_few_points_overall():
    with pytest.raises(SynthtuneError, match=r"budget \(11\).*10 points"):
        gp_select(_pool(10), 11, tau=1.0)


def test_too_few_points_for_a_label():
    labels = [0] * 8 + [1] * 2
    with pytest.raises(SynthtuneError, match="label 1 has 2 points but needs 3"):
        gp_select(_pool(10), 6, labels=labels, tau=1.0)


def test_bad_inputs():
    with pytest.raises(SynthtuneError, match="one label per pool row"):
        gp_select(_pool(10), 2, labels=[0, 1], tau=1.0)
    with pytest.raises(SynthtuneError, match="budget policy"):
        split_budget({0: 5}, 2, policy="proportional")  # type: ignore[arg-type]
    with pytest.raises(SynthtuneError, match="NaN"):
        gp_select(torch.full((5, 2), float("nan")), 2, tau=1.0)
    with pytest.raises(SynthtuneError, match="method"):
        gp_select(_pool(10), 2, tau=1.0, method="fast")  # type: ignore[arg-type]


def test_a_cluster_is_the_max_variance_row_and_its_nearest_same_label_neighbours():
    x = _pool(120, 4, seed=3)
    labels = torch.arange(120) % 2
    sel = gp_select(x, 20, labels=labels, tau=1.5, seed=1, cluster_size=4)
    clusters = {}
    for step in sel.steps:
        clusters.setdefault(step.cluster, []).append(step)
    # 20 rows, 10 per label: clusters of 4, 4 and 2 per label, interleaved over the labels
    assert sorted(len(c) for c in clusters.values()) == [2, 2, 4, 4, 4, 4]
    assert [clusters[c][0].label for c in sorted(clusters)] == [0, 1, 0, 1, 0, 1]
    taken = set()
    for members in clusters.values():
        center, label = members[0].index, members[0].label
        assert all(m.label == label for m in members)
        # brute force: the unpicked same-label rows nearest the center, in order of distance
        candidates = [i for i in range(120) if int(labels[i]) == label and i not in taken and i != center]
        by_distance = sorted(candidates, key=lambda i: float(((x[i] - x[center]) ** 2).sum()))
        assert [m.index for m in members[1:]] == by_distance[: len(members) - 1]
        taken |= {m.index for m in members}
    assert len(taken) == 20


def test_the_next_cluster_leaves_the_whole_previous_cluster():
    # Two tight groups of 4 and one far group: after a cluster of 4 is taken from one group, the
    # GP conditioned on all four sends the next cluster elsewhere.
    group = torch.tensor([[0.0, 0.0], [0.01, 0.0], [0.0, 0.01], [0.01, 0.01]])
    x = torch.cat([group, group + 5.0, group + 10.0])
    sel = gp_select(x, 12, tau=1.0, seed=0, cluster_size=4)
    groups = [{i // 4 for i in sel.indices[k:k + 4]} for k in (0, 4, 8)]
    assert all(len(g) == 1 for g in groups) and set.union(*groups) == {0, 1, 2}


def test_cluster_size_must_be_positive():
    with pytest.raises(SynthtuneError, match="cluster size must be >= 1"):
        gp_select(_pool(10, 2), 4, cluster_size=0)
