"""Per-dimension standardisation of SoftSRV's context vectors."""

import pytest
import torch

from synthtune.components.softsrv.context_standardizer import ContextStandardizer
from synthtune.errors import SynthtuneError


def test_fit_standardises_every_dimension_of_the_training_contexts():
    torch.manual_seed(0)
    scales = torch.tensor([1e-3, 1.0, 50.0, 0.0])
    z = torch.randn(40, 4) * scales + torch.tensor([0.5, -2.0, 300.0, 7.0])
    norm = ContextStandardizer(4)
    assert not norm.fitted
    norm.fit(z)
    assert norm.fitted and norm.count.item() == 40
    out = norm(z)
    torch.testing.assert_close(out[:, :3].mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, :3].std(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    # A constant dimension is centred, never divided by ~0.
    assert norm.std[3].item() == 1.0
    torch.testing.assert_close(out[:, 3], torch.zeros(40))
    # New contexts get the training statistics, not their own.
    new = torch.tensor([[0.5, -2.0, 300.0, 8.0]])
    torch.testing.assert_close(norm(new), (new - norm.mean) / norm.std)
    assert norm(new)[0, 3].item() == pytest.approx(1.0)


def test_statistics_are_buffers_that_round_trip_through_a_state_dict():
    norm = ContextStandardizer(3)
    norm.fit(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 7.0]]))
    state = norm.state_dict()
    assert set(state) == {"mean", "std", "count"}
    fresh = ContextStandardizer(3)
    fresh.load_state_dict(state)
    assert fresh.fitted
    torch.testing.assert_close(fresh.mean, torch.tensor([2.0, 2.0, 5.0]))
    torch.testing.assert_close(fresh.std, torch.tensor([1.0, 1.0, 2.0]))


def test_wrong_shapes_are_refused():
    with pytest.raises(SynthtuneError, match=r"expected \(n > 0, 3\)"):
        ContextStandardizer(3).fit(torch.zeros(5, 2))
    with pytest.raises(SynthtuneError, match="expected"):
        ContextStandardizer(3).fit(torch.zeros(0, 3))
