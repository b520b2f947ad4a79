import pytest
import torch
import torch.nn.functional as F

from synthtune.components.prompt_tuning.combination import (
    STRATEGIES,
    CombinedBatches,
    plan_epoch,
    smoothed_cross_entropy,
    smoothing_for_step,
)
from synthtune.errors import SynthtuneError


def _flatten(steps, key):
    return [i for s in steps if s[key] for i in s[key]]


def test_real_only_covers_real_once():
    steps = plan_epoch("real", n_real=10, n_syn=0, batch_size=4, epoch=0, seed=0)
    assert [len(s["real"]) for s in steps] == [4, 4, 2]
    assert all(s["syn"] is None for s in steps)
    assert sorted(_flatten(steps, "real")) == list(range(10))


def test_synthetic_only_covers_synthetic_once_and_no_real_example():
    steps = plan_epoch("syn", n_real=10, n_syn=9, batch_size=4, epoch=0, seed=0)
    assert [len(s["syn"]) for s in steps] == [4, 4, 1]
    assert all(s["real"] is None for s in steps)
    assert sorted(_flatten(steps, "syn")) == list(range(9))
    only = plan_epoch("syn", n_real=0, n_syn=3, batch_size=4, epoch=0, seed=0)  # no real set needed
    assert len(only) == 1 and only[0]["real"] is None and sorted(only[0]["syn"]) == [0, 1, 2]
    with pytest.raises(SynthtuneError, match="synthetic set is empty"):
        plan_epoch("syn", n_real=10, n_syn=0, batch_size=4, epoch=0, seed=0)


@pytest.mark.parametrize("strategy", ["real+syn", "real+syn+ls"])
def test_mixed_strategies_shuffle_both_sets_together(strategy):
    steps = plan_epoch(strategy, n_real=7, n_syn=13, batch_size=5, epoch=0, seed=3)
    assert len(steps) == 4
    assert sorted(_flatten(steps, "real")) == list(range(7))
    assert sorted(_flatten(steps, "syn")) == list(range(13))
    assert all(len(s["real"] or []) + len(s["syn"] or []) == 5 for s in steps)
    # Shuffled together: at least one batch holds both kinds.
    assert any(s["real"] and s["syn"] for s in steps)


def test_real_then_syn_and_syn_then_real_orders():
    steps = plan_epoch("real->syn", n_real=5, n_syn=7, batch_size=2, epoch=1, seed=0)
    kinds = ["real" if s["real"] else "syn" for s in steps]
    assert kinds == ["real"] * 3 + ["syn"] * 4
    assert all((s["real"] is None) != (s["syn"] is None) for s in steps)
    assert sorted(_flatten(steps, "real")) == list(range(5))
    assert sorted(_flatten(steps, "syn")) == list(range(7))

    steps = plan_epoch("syn->real", n_real=5, n_syn=7, batch_size=2, epoch=1, seed=0)
    kinds = ["real" if s["real"] else "syn" for s in steps]
    assert kinds == ["syn"] * 4 + ["real"] * 3


def test_paired_yields_one_of_each_and_cycles_real():
    steps = plan_epoch("paired", n_real=4, n_syn=20, batch_size=3, epoch=0, seed=0)
    assert len(steps) == 7  # ceil(20 / 3) synthetic batches
    assert all(s["real"] and s["syn"] for s in steps)
    assert sorted(_flatten(steps, "syn")) == list(range(20))
    real = _flatten(steps, "real")
    # The real set (2 batches per pass) is cycled: every real example appears at least 3 times.
    assert all(real.count(i) >= 3 for i in range(4))
    assert set(real) == set(range(4))


def test_paired_cycles_synthetic_when_it_is_the_shorter_set():
    steps = plan_epoch("paired", n_real=9, n_syn=2, batch_size=2, epoch=0, seed=0)
    assert len(steps) == 5
    assert sorted(_flatten(steps, "real")) == list(range(9))
    assert all(s["syn"] for s in steps)


def test_plans_are_seeded_and_epochs_differ():
    for strategy in STRATEGIES:
        a = plan_epoch(strategy, 30, 40, 4, epoch=2, seed=11)
        assert a == plan_epoch(strategy, 30, 40, 4, epoch=2, seed=11)
        assert a != plan_epoch(strategy, 30, 40, 4, epoch=3, seed=11)
        assert a != plan_epoch(strategy, 30, 40, 4, epoch=2, seed=12)


def test_combined_batches_iterates_the_epoch_plan():
    batches = CombinedBatches("real->syn", n_real=6, n_syn=4, batch_size=2, seed=5)
    assert list(batches) == plan_epoch("real->syn", 6, 4, 2, epoch=0, seed=5)
    batches.set_epoch(3)
    assert len(batches) == 5
    assert list(batches) == plan_epoch("real->syn", 6, 4, 2, epoch=3, seed=5)


def test_bad_strategy_and_missing_synthetic_data_raise():
    with pytest.raises(SynthtuneError, match="real->syn") as err:
        plan_epoch("mixup", 4, 4, 2, 0, 0)
    assert "\n" not in str(err.value)
    with pytest.raises(SynthtuneError, match="synthetic set is empty"):
        plan_epoch("paired", 4, 0, 2, 0, 0)
    with pytest.raises(SynthtuneError, match="batch_size"):
        plan_epoch("real", 4, 0, 0, 0, 0)
    assert plan_epoch("real", 4, 0, 2, 0, 0)  # real-only needs no synthetic data


def test_label_smoothing_only_on_synthetic_examples():
    step = {"real": [0, 1], "syn": [5, 6, 7]}
    s = smoothing_for_step(step, "real+syn+ls", 0.2)
    assert torch.equal(s, torch.tensor([0.0, 0.0, 0.2, 0.2, 0.2]))
    assert torch.equal(smoothing_for_step(step, "real+syn", 0.2), torch.zeros(5))
    with pytest.raises(SynthtuneError, match="smoothing"):
        smoothing_for_step(step, "real+syn+ls", 1.0)


def test_smoothed_cross_entropy_matches_torch_and_is_per_example():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=gen)
    targets = torch.tensor([0, 2, 1, 1, 0])
    zero = smoothed_cross_entropy(logits, targets, torch.zeros(5))
    torch.testing.assert_close(zero, F.cross_entropy(logits, targets))
    torch.testing.assert_close(
        smoothed_cross_entropy(logits, targets, torch.full((5,), 0.3)),
        F.cross_entropy(logits, targets, label_smoothing=0.3),
    )
    # Smoothing only the last two examples changes only their terms.
    s = torch.tensor([0.0, 0.0, 0.0, 0.4, 0.4])
    per = torch.stack([
        F.cross_entropy(logits[i:i + 1], targets[i:i + 1], label_smoothing=float(s[i])) for i in range(5)
    ])
    torch.testing.assert_close(smoothed_cross_entropy(logits, targets, s), per.mean())
