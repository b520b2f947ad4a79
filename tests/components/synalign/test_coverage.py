"""Coverage curve: monotone, reaches 1 with every point selected, radius semantics, plot output."""

import numpy as np
import pytest
import torch

from synthtune.components.synalign.coverage import coverage_curve, plot_coverage
from synthtune.components.synalign.gp_sampler import gp_select
from synthtune.errors import SynthtuneError


def _pool(n: int = 150, d: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_monotone_and_reaches_one_when_all_selected():
    x = _pool()
    order = torch.randperm(150, generator=torch.Generator().manual_seed(1))
    curve = coverage_curve(x, order, r=0.3)
    assert curve.shape == (150,)
    assert np.all(np.diff(curve) >= 0)
    assert curve[-1] == pytest.approx(1.0)
    assert 0 < curve[0] < 0.2


def test_radius_semantics_on_a_line():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0]])
    assert coverage_curve(x, [1], r=1.0).tolist() == [0.75]  # 0, 1, 2 within 1 of the point at 1
    assert coverage_curve(x, [1], r=0.99).tolist() == [0.25]
    assert coverage_curve(x, [1, 3], r=0.0).tolist() == [0.25, 0.5]
    assert coverage_curve(x, [], r=1.0).shape == (0,)


def test_cosine_metric_ignores_norm():
    x = torch.tensor([[1.0, 0.0], [5.0, 0.0], [0.0, 1.0]])
    assert coverage_curve(x, [0], r=0.01, metric="cosine").tolist() == pytest.approx([2 / 3])
    assert coverage_curve(x, [0], r=0.01).tolist() == pytest.approx([1 / 3])


def test_gp_selection_covers_clustered_pool_better_than_random():
    # Imbalanced clusters: random sampling keeps hitting the big one; GP exploration visits all.
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(12, 8, generator=g) * 6.0
    sizes = [300] + [15] * 11
    x = torch.cat([c + 0.3 * torch.randn(s, 8, generator=g) for c, s in zip(centres, sizes)])
    gp = gp_select(x, 24, tau=2.0, seed=0).indices
    rnd = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:24].tolist()
    assert coverage_curve(x, gp, r=1.5)[-1] > coverage_curve(x, rnd, r=1.5)[-1] + 0.1


def test_bad_inputs():
    x = _pool(10)
    with pytest.raises(SynthtuneError, match="radius"):
        coverage_curve(x, [0], r=-1.0)
    with pytest.raises(SynthtuneError, match=r"\[0, 9\]"):
        coverage_curve(x, [10], r=1.0)
    with pytest.raises(SynthtuneError, match="metric"):
        coverage_curve(x, [0], r=1.0, metric="manhattan")  # type: ignore[arg-type]
    with pytest.raises(SynthtuneError, match="at least one curve"):
        plot_coverage({}, "unused.png", tau=1.0, r=1.0)


def test_plot_writes_png(tmp_path):
    x = _pool(60)
    curves = {
        "gp": coverage_curve(x, gp_select(x, 20, tau=1.0).indices, r=0.8),
        "random": coverage_curve(x, list(range(20)), r=0.8),
    }
    out = plot_coverage(curves, tmp_path / "sub" / "coverage.png", tau=1.0, r=0.8)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list((tmp_path / "sub").glob("*.tmp"))
