import torch

from synthtune.components import encoders
from synthtune.components.backbone import load_backbone
from synthtune.components.encoders import build_context_encoder, cached_encode


def test_backbone_encoder_is_the_mean_token_embedding(tiny_llama):
    bb = load_backbone(tiny_llama)
    enc = build_context_encoder("backbone", bb)
    vectors = enc.encode(["Natalia sold clips", "Weng"])
    ids = bb.tokenizer("Natalia sold clips", add_special_tokens=False)["input_ids"]
    expected = bb.model.get_input_embeddings().weight[ids].mean(0)
    torch.testing.assert_close(vectors[0], expected)
    assert vectors.shape == (2, bb.hidden_size) and enc.dim == bb.hidden_size


def test_contexts_are_computed_once_and_then_read_from_the_cache(tiny_llama, monkeypatch):
    bb = load_backbone(tiny_llama)
    enc = build_context_encoder("backbone", bb)
    calls = []
    original = encoders.MeanEmbeddingEncoder.encode
    monkeypatch.setattr(encoders.MeanEmbeddingEncoder, "encode",
                        lambda self, texts: calls.append(len(texts)) or original(self, texts))
    texts = ["a question about apples", "another about pears"]
    first = cached_encode(enc, texts)
    second = cached_encode(enc, texts)
    assert calls == [2]
    torch.testing.assert_close(first, second)
    cached_encode(enc, texts + ["new"])
    assert calls == [2, 3]
