import pytest
import torch

from synthtune.components.softsrv.soft_prompts import MLPPrompt, MixturePrompt, NonParametricPrompt, build_soft_prompt
from synthtune.errors import SynthtuneError

T, D, DE, B = 5, 12, 7, 3


@pytest.mark.parametrize("kind", ["np", "mp", "mc"])
def test_shapes_and_gradients_reach_every_parameter(kind):
    prompt = build_soft_prompt(kind, T, D, DE, num_basis=2, mlp_hidden=16, mlp_layers=3)
    z = torch.randn(B, DE, requires_grad=True)
    out = prompt(z)
    assert out.shape == (B, T, D)
    out.square().sum().backward()
    assert list(prompt.parameters()) and all(p.grad is not None and p.grad.abs().sum() > 0 for p in prompt.parameters())


def test_np_ignores_the_context():
    prompt = NonParametricPrompt(T, D)
    a, b = prompt(torch.randn(2, DE)), prompt(torch.randn(2, DE))
    assert torch.equal(a, b)
    assert prompt(None, batch_size=4).shape == (4, T, D)


def test_mp_is_a_convex_mixture_of_its_bases():
    prompt = MixturePrompt(T, D, DE, num_basis=2)
    z = torch.randn(B, DE)
    w = torch.softmax(prompt.mixer(z), -1)
    expected = w[:, 0, None, None] * prompt.bases[0] + w[:, 1, None, None] * prompt.bases[1]
    torch.testing.assert_close(prompt(z), expected)


def test_mc_batched_matmul_equals_one_mlp_per_token():
    prompt = MLPPrompt(T, D, DE, mlp_hidden=16, mlp_layers=3)
    z = torch.randn(B, DE)
    out = prompt(z)
    for i in range(T):  # token i's own MLP F_φi, evaluated alone
        h = z
        for layer, (w, b) in enumerate(zip(prompt.weights, prompt.biases)):
            h = h @ w[i] + b[i]
            if layer < len(prompt.weights) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(out[:, i], h)


def test_mc_starts_near_its_init():
    init = torch.randn(T, D)
    prompt = MLPPrompt(T, D, DE, init=init)
    assert (prompt(torch.randn(B, DE)) - init).abs().mean() < 0.5 * init.abs().mean()


@pytest.mark.parametrize("length", [0, -3])
def test_non_positive_prompt_length_is_one_clear_error(length):
    with pytest.raises(SynthtuneError, match="prompt_length"):
        build_soft_prompt("mc", length, D, DE)


def test_unknown_parameterization():
    with pytest.raises(SynthtuneError, match="np, mp, mc"):
        build_soft_prompt("xx", T, D, DE)
