"""Coverage curves: ball coverage (monotone, radius semantics) and convex-hull coverage in 2-D PCA against a
brute-force hull, plot output."""

import numpy as np
import pytest
import torch

from helpers import random_pool
from synthtune.components.synalign.coverage import (
    coverage_curve,
    hull_area,
    hull_coverage_curve,
    plot_coverage,
    plot_tau_sweep,
    pool_projection,
)
from synthtune.components.synalign.gp_sampler import gp_select
from synthtune.errors import SynthtuneError


def _pool(n: int = 150, d: int = 4, seed: int = 0) -> torch.Tensor:
    return random_pool(n, d, seed)


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


def brute_hull_area(points):
    """Shoelace sum over the hull's directed edges, found by brute force: (i, j) is a counter-clockwise hull
    edge when no point lies to its right (points in general position)."""
    p = [tuple(map(float, q)) for q in points]
    area = 0.0
    for i, a in enumerate(p):
        for j, b in enumerate(p):
            if i != j and all((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]) >= 0
                              for k, c in enumerate(p) if k not in (i, j)):
                area += 0.5 * (a[0] * b[1] - b[0] * a[1])
    return area


def test_hull_coverage_curve_matches_a_brute_force_hull_on_every_prefix():
    points = np.random.default_rng(3).normal(size=(25, 2))
    order = np.random.default_rng(4).permutation(25)
    curve = hull_coverage_curve(points, order)
    total = brute_hull_area(points)
    expected = [0.0, 0.0] + [brute_hull_area(points[order[: t + 1]]) / total for t in range(2, 25)]
    assert np.allclose(curve, expected, atol=1e-12) and curve[-1] == pytest.approx(1.0)
    assert hull_area(points[:2]) == 0.0 and hull_area(np.array([[0, 0], [1, 1], [2, 2.0]])) == 0.0


def test_pool_projection_keeps_the_areas_of_a_pool_that_lies_in_a_plane():
    plane = np.random.default_rng(5).normal(size=(30, 2)) * np.array([3.0, 1.0])
    rotation, _ = np.linalg.qr(np.random.default_rng(6).normal(size=(5, 5)))
    pool = np.hstack([plane, np.zeros((30, 3))]) @ rotation.T + 7.0  # the plane, rotated and shifted into 5-D
    projected = pool_projection(torch.from_numpy(pool))
    order = [4, 9, 1, 17, 22, 3, 28, 11]
    expected = [brute_hull_area(plane[order[: t + 1]]) / brute_hull_area(plane) if t >= 2 else 0.0 for t in range(8)]
    assert np.allclose(hull_coverage_curve(projected, order), expected, atol=1e-5)


def test_hull_coverage_bad_inputs():
    with pytest.raises(SynthtuneError, match="2-D points"):
        hull_coverage_curve(np.zeros((5, 3)), [0])
    with pytest.raises(SynthtuneError, match="no area"):
        hull_coverage_curve(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]), [0, 1])
    with pytest.raises(SynthtuneError, match="selected indices"):
        hull_coverage_curve(np.random.default_rng(0).normal(size=(5, 2)), [7])


def test_two_panel_coverage_and_tau_sweep_plots_are_pngs(tmp_path):
    out = plot_coverage({"gp": [0.1, 0.5]}, tmp_path / "c.png", tau=1.0, r=0.5, hull_curves={"gp": [0.0, 0.3]})
    sweep = plot_tau_sweep([0.5, 1.0, 2.0], {"ball": [0.2, 0.4, 0.3], "hull": [0.5, 0.7, 0.6]}, tmp_path / "t.png", 10,
                           baselines={"random, ball": 0.25})
    assert out.read_bytes()[:4] == b"\x89PNG" and sweep.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SynthtuneError, match="at least one tau"):
        plot_tau_sweep([], {"ball": []}, tmp_path / "u.png", 10)
