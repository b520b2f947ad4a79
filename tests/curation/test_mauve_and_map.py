"""MAUVE wrapper (App. A.7) and the 2-D embedding map."""

import importlib.util
import sys

import numpy as np
import pytest

from synthtune.curation.embedding_map import plot_embedding_map, project_2d
from synthtune.curation.mauve_score import mauve_score
from synthtune.errors import SynthtuneError

needs_mauve = pytest.mark.skipif(importlib.util.find_spec("mauve") is None, reason="optional mauve-text not installed")


def _gaussians(n=240, d=16, shift=0.0, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32) + shift


@needs_mauve
def test_identical_sets_score_high_disjoint_low():
    p = _gaussians(seed=0)
    same = mauve_score(p, p.copy(), num_clusters=8, seeds=(0, 1), kmeans_num_redo=1, kmeans_max_iter=50)
    assert same["mean"] > 0.95
    assert set(same["per_seed"]) == {0, 1}
    assert same["n_p"] == same["n_q"] == 240
    far = np.random.default_rng(1).normal(size=(240, 16)).astype(np.float32)
    far[:, 0] += 10.0  # a separate cloud
    disjoint = mauve_score(p, far, num_clusters=8, seeds=(0, 1), kmeans_num_redo=1, kmeans_max_iter=50)
    assert disjoint["mean"] < 0.1
    assert disjoint["std"] >= 0.0


@needs_mauve
def test_same_distribution_scores_higher_than_shifted():
    p = _gaussians(seed=0)
    q_same = _gaussians(seed=1)
    q_shift = _gaussians(seed=2, shift=0.8)
    kw = dict(num_clusters=8, seeds=(0,), kmeans_num_redo=1, kmeans_max_iter=50)
    assert mauve_score(p, q_same, **kw)["mean"] > mauve_score(p, q_shift, **kw)["mean"]


def test_too_few_points_and_bad_shapes():
    p = _gaussians(n=15)
    with pytest.raises(SynthtuneError, match="at least 16 rows"):
        mauve_score(p, _gaussians(n=100), num_clusters=8)
    with pytest.raises(SynthtuneError, match="feature sizes differ"):
        mauve_score(_gaussians(d=4), _gaussians(d=5), num_clusters=2)
    with pytest.raises(SynthtuneError, match="2-D"):
        mauve_score(np.zeros(10), _gaussians(), num_clusters=2)


def test_missing_mauve_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mauve", None)  # makes `import mauve` raise ImportError
    with pytest.raises(SynthtuneError, match=r"pip install 'synthtune\[mauve\]'"):
        mauve_score(_gaussians(), _gaussians(seed=1), num_clusters=4)


def test_embedding_map_png(tmp_path):
    real = _gaussians(n=100, d=8, seed=0)
    synthetic = _gaussians(n=120, d=8, seed=1, shift=3.0)
    (r2, s2), ratio = project_2d([real, synthetic])
    assert r2.shape == (100, 2) and s2.shape == (120, 2)
    # The shift is the main direction of variance: the clouds separate on PC 1.
    assert abs(r2[:, 0].mean() - s2[:, 0].mean()) > 4.0
    assert ratio[0] > ratio[1] > 0
    path = plot_embedding_map(real, {"synthetic": synthetic}, tmp_path / "sub" / "map.png", max_points=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
    with pytest.raises(SynthtuneError, match="equal d"):
        project_2d([real, _gaussians(d=3)])


def test_embedding_map_panels_share_one_projection(tmp_path):
    real, before, after = _gaussians(n=60, d=8, seed=0), _gaussians(n=40, d=8, seed=1, shift=3.0), _gaussians(n=40, d=8, seed=2)
    (r2, b2, a2), ratio = project_2d([real, before, after], method="tsne")
    assert ratio is None and {r2.shape, b2.shape, a2.shape} == {(60, 2), (40, 2)}
    # t-SNE keeps the shifted set apart from the real cloud, the unshifted one inside it.
    centre = r2.mean(0)
    assert np.linalg.norm(b2.mean(0) - centre) > np.linalg.norm(a2.mean(0) - centre)
    one = plot_embedding_map(real, {"before": before}, tmp_path / "one.png", marked=real[:5])
    two = plot_embedding_map(real, {"before": before, "after": after}, tmp_path / "two.png", marked=real[:5])
    from PIL import Image

    assert Image.open(two).size[0] > Image.open(one).size[0]  # one panel per synthetic set
