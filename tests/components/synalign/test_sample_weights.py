"""MMD weight learning: concentrates on the matching mixture component; resampling follows the weights."""

import time

import pytest
import torch
from scipy.stats import chisquare

from helpers import one_thread  # noqa: F401 (an autouse fixture)
from synthtune.components.synalign.mmd import weighted_mmd2
from synthtune.components.synalign.sample_weights import SampleWeightNet, fit_mmd_weights, per_label_weights, resample
from synthtune.errors import SynthtuneError


def _toy(seed: int = 0):
    """Synthetic = 50/50 mixture of N(+2, I) and N(−2, I) in 8-d; real = only N(+2, I)."""
    g = torch.Generator().manual_seed(seed)
    d = 8
    good = torch.randn(1000, d, generator=g) + 2.0
    bad = torch.randn(1000, d, generator=g) - 2.0
    syn = torch.cat([good, bad])
    real = torch.randn(800, d, generator=g) + 2.0
    is_good = torch.cat([torch.ones(1000, dtype=torch.bool), torch.zeros(1000, dtype=torch.bool)])
    return syn, real, is_good


def test_weights_concentrate_on_matching_component():
    syn, real, is_good = _toy()
    start = time.perf_counter()
    weights, hist = fit_mmd_weights(syn, real, steps=150, batch_syn=256, batch_real=256, lr=1e-2, seed=0)
    assert time.perf_counter() - start < 10
    assert weights.shape == (2000,)
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(weights[is_good].sum()) > 0.95
    bw = hist.bandwidths
    before = float(weighted_mmd2(syn, real, bw))
    after = float(weighted_mmd2(syn, real, bw, weights))
    assert after < 0.1 * before
    assert len(hist.loss) == 150 and hist.loss[-1] < hist.uniform_loss[-1]
    assert hist.net is not None


def test_fit_is_reproducible_by_seed():
    syn, real, _ = _toy(1)
    a, _ = fit_mmd_weights(syn, real, steps=5, batch_syn=64, batch_real=64, seed=3)
    b, _ = fit_mmd_weights(syn, real, steps=5, batch_syn=64, batch_real=64, seed=3)
    assert torch.equal(a, b)


def test_mixture_bandwidth_and_explicit_list():
    syn, real, is_good = _toy(2)
    w, hist = fit_mmd_weights(syn, real, steps=60, batch_syn=256, batch_real=256, lr=2e-2, bandwidth="mixture", seed=0)
    assert len(hist.bandwidths) == 3
    assert float(w[is_good].sum()) > 0.8
    _, hist2 = fit_mmd_weights(syn, real, steps=1, bandwidth=[1.0, 3.0])
    assert hist2.bandwidths == [1.0, 3.0]


def test_untrained_net_gives_uniform_and_global_weights_are_softmax_over_all():
    net = SampleWeightNet(4, hidden=8)
    e = torch.randn(10, 4)
    assert torch.allclose(net(e), torch.full((10,), 0.1))
    torch.nn.init.normal_(net.out.weight)
    g = net.global_weights(e, chunk_size=3)
    assert torch.allclose(g, torch.softmax(net.scores(e), 0), atol=1e-6)
    with pytest.raises(SynthtuneError, match=r"shape \[n, 4\]"):
        net(torch.randn(3, 5))


def test_nan_asks_for_lower_learning_rate():
    syn, real, _ = _toy(3)
    with pytest.raises(SynthtuneError, match="lower the learning rate"):
        fit_mmd_weights(syn * 1e3, real * 1e3, steps=30, batch_syn=64, batch_real=64, lr=1e37, seed=0)


def test_fit_input_errors():
    syn, real, _ = _toy(4)
    with pytest.raises(SynthtuneError, match="dimension"):
        fit_mmd_weights(syn, real[:, :4], steps=1)
    with pytest.raises(SynthtuneError, match="learning rate"):
        fit_mmd_weights(syn, real, steps=1, lr=0.0)
    with pytest.raises(SynthtuneError, match="all identical"):
        fit_mmd_weights(torch.ones(5, 3), torch.ones(5, 3), steps=1)


def test_resample_with_replacement_follows_weights():
    w = torch.tensor([0.5, 0.3, 0.2, 0.0])
    idx = resample(w, 20_000, replace=True, seed=0)
    counts = torch.bincount(idx, minlength=4)
    assert int(counts[3]) == 0
    assert chisquare(counts[:3].numpy(), f_exp=(w[:3] * 20_000).numpy()).pvalue > 1e-3
    assert torch.equal(idx, resample(w, 20_000, replace=True, seed=0))
    # unnormalised weights give the same draw
    assert torch.equal(idx, resample(w * 7, 20_000, replace=True, seed=0))


def test_resample_without_replacement():
    w = torch.tensor([0.0, 1.0, 2.0, 0.0, 3.0])
    idx = resample(w, 3, replace=False, seed=1)
    assert sorted(idx.tolist()) == [1, 2, 4]
    with pytest.raises(SynthtuneError, match="cannot draw 4 samples without replacement from 3 non-zero"):
        resample(w, 4, replace=False)
    # the heaviest weight is drawn first most often
    firsts = torch.bincount(torch.stack([resample(w, 1, replace=False, seed=s) for s in range(600)]).squeeze(1), minlength=5)
    assert firsts[4] > firsts[2] > firsts[1] > 0 and firsts[0] == 0 and firsts[3] == 0


def test_resample_bad_weights():
    with pytest.raises(SynthtuneError, match="non-negative"):
        resample(torch.tensor([0.5, -0.1]), 1, replace=True)
    with pytest.raises(SynthtuneError, match="all weights are zero"):
        resample(torch.zeros(3), 1, replace=True)
    with pytest.raises(SynthtuneError, match="finite"):
        resample(torch.tensor([float("nan"), 1.0]), 1, replace=True)


def test_per_label_weights_give_each_label_its_share_and_softmax_within_it():
    scores = torch.tensor([0.0, 1.0, 2.0, -1.0, 5.0])
    labels = torch.tensor([1, 0, 1, 1, 0])
    w = per_label_weights(scores, labels)
    e = torch.exp(scores)
    expected = torch.tensor([e[0] / (e[0] + e[2] + e[3]) * 3 / 5, e[1] / (e[1] + e[4]) * 2 / 5,
                             e[2] / (e[0] + e[2] + e[3]) * 3 / 5, e[3] / (e[0] + e[2] + e[3]) * 3 / 5,
                             e[4] / (e[1] + e[4]) * 2 / 5])
    assert torch.allclose(w, expected, atol=1e-7) and float(w[labels == 0].sum()) == pytest.approx(0.4)
    with pytest.raises(SynthtuneError, match="one length"):
        per_label_weights(scores, labels[:3])
