import pytest
import torch
import torch.nn.functional as F

from synthtune.components.backbone import load_backbone
from synthtune.components.prompt_tuning.verbalizer import (
    build_verbalizer,
    class_scores,
    encode_texts,
    fill_label,
    render_row,
    truncate_field,
)
from synthtune.errors import SynthtuneError

TEXTS = ["Tom has 3 apples and buys more", "How many", "She sells 12 eggs every day at the market"]


def one_token_words(tokenizer, n):
    words = [w for w in (" the", " is", " and", " a", " he") if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1]
    assert len(words) >= n
    return words[:n]


def test_single_token_words_map_to_their_ids(tiny_llama):
    tok = load_backbone(tiny_llama).tokenizer
    words = one_token_words(tok, 3)
    v = build_verbalizer(tok, words, ["a", "b", "c"])
    assert v.single_token and v.num_classes == 3
    assert v.first_ids().tolist() == [tok(w, add_special_tokens=False)["input_ids"][0] for w in words]


def test_multi_token_word_is_a_one_line_error_naming_the_fix(tiny_llama):
    tok = load_backbone(tiny_llama).tokenizer
    assert len(tok(" terrible", add_special_tokens=False)["input_ids"]) > 1
    with pytest.raises(SynthtuneError) as info:
        build_verbalizer(tok, [" the", " terrible"], ["negative", "positive"])
    message = str(info.value)
    assert "\n" not in message and "' terrible'" in message and "positive" in message
    assert "single token" in message and "multi_token_labels" in message
    assert not build_verbalizer(tok, [" the", " terrible"], multi_token=True).single_token


@pytest.mark.parametrize("words,names,needle", [
    ([" the"], None, "at least two"),
    ([" the", " is"], ["a", "b", "c"], "one label word per label"),
    ([" the", " the"], None, "distinct"),
])
def test_bad_label_words(tiny_llama, words, names, needle):
    tok = load_backbone(tiny_llama).tokenizer
    with pytest.raises(SynthtuneError, match=needle):
        build_verbalizer(tok, words, names)


def test_rendering_truncates_fields_but_keeps_the_template_end(tiny_llama):
    tok = load_backbone(tiny_llama).tokenizer
    long = "word " * 100
    assert len(tok(truncate_field(tok, long, 5), add_special_tokens=False)["input_ids"]) <= 5
    out = render_row("{text_a} / {text_b} It was", {"text_a": long, "text_b": "short"}, tok, 5, ["text_a", "text_b"])
    assert out.endswith(" / short It was") and len(out) < 60
    assert fill_label("x It was", " great", False) == "x It was great"
    assert fill_label("x It was <extra_id_0>.", " great", True) == "x It was great."


def test_encode_texts_right_pads_after_the_context(tiny_llama):
    tok = load_backbone(tiny_llama).tokenizer
    ids, mask = encode_texts(tok, TEXTS[:2], context_ids=[5, 6], append_eos=True)
    lengths = mask.sum(1).tolist()
    assert ids[:, :2].tolist() == [[5, 6], [5, 6]]
    for row, n in enumerate(lengths):
        assert ids[row, n - 1] == tok.eos_token_id and (ids[row, n:] == tok.pad_token_id).all()


def _manual_next_token_logprobs(model, prefix, ids):
    """log-probs of the next token after ``ids`` (one unpadded row), the long way."""
    embeds = model.get_input_embeddings()(ids.unsqueeze(0))
    if prefix is not None:
        embeds = torch.cat([prefix, embeds], dim=1)
    return F.log_softmax(model(inputs_embeds=embeds).logits[0, -1].float(), dim=-1)


@pytest.mark.parametrize("with_prefix", [False, True])
def test_decoder_scores_are_next_token_logits_of_the_label_words_whatever_the_padding(tiny_llama, with_prefix):
    bb = load_backbone(tiny_llama)
    tok, model = bb.tokenizer, bb.model
    v = build_verbalizer(tok, one_token_words(tok, 3))
    prefix = torch.randn(1, 3, bb.hidden_size) * 0.1 if with_prefix else None
    ids, mask = encode_texts(tok, TEXTS)
    with torch.no_grad():
        scores = class_scores(model, v, prefix, ids, mask)
        for row in range(len(TEXTS)):
            n = int(mask[row].sum())
            logp = _manual_next_token_logprobs(model, prefix, ids[row, :n])
            expected = logp[v.first_ids()]
            # Scores are logits: equal to the log-probs up to one constant per row.
            assert torch.allclose(scores[row] - scores[row].logsumexp(0), expected - expected.logsumexp(0), atol=1e-4)


def test_decoder_multi_token_scores_sum_the_word_log_probs(tiny_llama):
    bb = load_backbone(tiny_llama)
    tok, model = bb.tokenizer, bb.model
    v = build_verbalizer(tok, [" terrible", " the"], multi_token=True)
    prefix = torch.randn(1, 2, bb.hidden_size) * 0.1
    ids, mask = encode_texts(tok, TEXTS)
    with torch.no_grad():
        scores = class_scores(model, v, prefix, ids, mask)
        for row in range(len(TEXTS)):
            n = int(mask[row].sum())
            for c, word in enumerate(v.token_ids):
                total, context = 0.0, ids[row, :n]
                for token in word:
                    total += float(_manual_next_token_logprobs(model, prefix, context)[token])
                    context = torch.cat([context, torch.tensor([token])])
                assert scores[row, c].item() == pytest.approx(total, abs=1e-4)


def test_multi_token_scoring_of_one_token_words_gives_the_same_class_softmax(tiny_llama):
    bb = load_backbone(tiny_llama)
    words = one_token_words(bb.tokenizer, 2)
    single = build_verbalizer(bb.tokenizer, words)
    ids, mask = encode_texts(bb.tokenizer, TEXTS)
    with torch.no_grad():
        a = class_scores(bb.model, single, None, ids, mask)
        b = class_scores(bb.model, single, None, ids, mask, per_token=True)  # the multi-token path
    assert torch.allclose(a.softmax(-1), b.softmax(-1), atol=1e-5)


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("sentinel", [False, True])
def test_t5_scores_read_the_label_word_after_the_sentinel(tiny_t5, multi, sentinel):
    bb = load_backbone(tiny_t5)
    tok, model = bb.tokenizer, bb.model
    words = [" terrible", " the"] if multi else one_token_words(tok, 2)
    v = build_verbalizer(tok, words, multi_token=multi)
    texts = [t + " It was <extra_id_0>." for t in TEXTS]
    ids, mask = encode_texts(tok, texts, append_eos=True)
    prefix = torch.randn(1, 2, bb.hidden_size) * 0.1
    start = model.config.decoder_start_token_id
    sentinel_id = tok.convert_tokens_to_ids("<extra_id_0>")
    head = [start, sentinel_id] if sentinel else [start]  # a span-corruption T5 emits <extra_id_0> first
    with torch.no_grad():
        scores = class_scores(model, v, prefix, ids, mask, sentinel_id=sentinel_id if sentinel else None)
        for row in range(len(texts)):
            n = int(mask[row].sum())
            embeds = torch.cat([prefix, model.get_input_embeddings()(ids[row:row + 1, :n])], dim=1)
            for c, word in enumerate(v.token_ids):
                decoder = torch.tensor([[*head, *word[:-1]]])
                logits = model(inputs_embeds=embeds, decoder_input_ids=decoder).logits[0, len(head) - 1:]
                if multi:
                    expected = sum(float(F.log_softmax(logits[j], -1)[t]) for j, t in enumerate(word))
                else:
                    expected = float(logits[0, word[0]])
                assert scores[row, c].item() == pytest.approx(expected, abs=1e-4)
