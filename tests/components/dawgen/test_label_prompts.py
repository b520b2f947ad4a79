import pytest
import torch
import torch.nn.functional as F

from synthtune.components.backbone import load_backbone
from synthtune.components.dawgen.label_prompts import (LabelPrompts, all_label_logprobs, label_loglik_ratio, label_prefix,
                                                label_token_scores, pooled_representation, token_representations)
from synthtune.errors import SynthtuneError


def right_pad(seqs, pad=0):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


CONTEXTS = [[5, 6, 7], [8]]
TARGETS = [[11, 12], [13, 14, 15, 16]]


def test_label_prompts_pick_each_rows_label_and_validate_init():
    init = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    q = LabelPrompts(2, 3, 4, init=init)
    out = q(torch.tensor([1, 0, 1]))
    assert out.shape == (3, 3, 4) and torch.equal(out[0], init[1]) and torch.equal(out[1], init[0])
    shared = LabelPrompts(3, 3, 4, init=init[0])
    assert torch.equal(shared.prompts[2], init[0])
    shared.set_tail(1, torch.ones(2, 4))
    assert torch.equal(shared.prompts[1, 1:], torch.ones(2, 4)) and torch.equal(shared.prompts[1, 0], init[0, 0])
    with pytest.raises(SynthtuneError, match="expected"):
        LabelPrompts(2, 3, 4, init=torch.zeros(5, 4))
    with pytest.raises(SynthtuneError, match="at least 2"):
        LabelPrompts(1, 3, 4)


def test_decoder_scores_equal_an_explicit_forward_of_prompt_context_and_target(tiny_llama):
    model = load_backbone(tiny_llama).model
    torch.manual_seed(0)
    prompt = torch.randn(2, 3, 32) * 0.1
    ctx, cmask = right_pad(CONTEXTS)
    tgt, tmask = right_pad(TARGETS)
    scores = label_token_scores(model, prompt, tgt, tmask, ctx, cmask)
    embed = model.get_input_embeddings()
    for row in range(2):
        seq = torch.tensor(CONTEXTS[row] + TARGETS[row])
        inputs = torch.cat([prompt[row], embed(seq)]).unsqueeze(0)
        logp = F.log_softmax(model(inputs_embeds=inputs).logits[0].float(), -1)
        start = 3 - 1 + len(CONTEXTS[row])  # position predicting the first target token
        expected = torch.stack([logp[start + j, tok] for j, tok in enumerate(TARGETS[row])])
        torch.testing.assert_close(scores.logprobs[row, :len(TARGETS[row])], expected, rtol=1e-4, atol=1e-5)
        assert torch.all(scores.logprobs[row, len(TARGETS[row]):] == 0)
    assert scores.hidden.shape == (2, 4, 32)


def test_t5_scores_equal_the_models_own_teacher_forced_logits(tiny_t5):
    model = load_backbone(tiny_t5).model
    torch.manual_seed(0)
    prompt = torch.randn(2, 3, 32) * 0.1
    ctx, cmask = right_pad(CONTEXTS)
    tgt, tmask = right_pad(TARGETS, pad=model.config.pad_token_id)
    scores = label_token_scores(model, prompt, tgt, tmask, ctx, cmask)
    embed = model.get_input_embeddings()
    for row in range(2):
        enc = torch.cat([prompt[row], embed(torch.tensor(CONTEXTS[row]))]).unsqueeze(0)
        labels = torch.tensor([TARGETS[row]])
        logp = F.log_softmax(model(inputs_embeds=enc, labels=labels).logits[0].float(), -1)
        expected = logp.gather(-1, labels[0].unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(scores.logprobs[row, :len(TARGETS[row])], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_t5"])
def test_all_label_logprobs_stack_every_labels_scores(fixture, request):
    model = load_backbone(request.getfixturevalue(fixture)).model
    torch.manual_seed(1)
    prompts = torch.randn(3, 2, 32) * 0.1
    ctx, cmask = right_pad(CONTEXTS)
    tgt, tmask = right_pad(TARGETS)
    out = all_label_logprobs(model, prompts, tgt, tmask, ctx, cmask)
    assert out.shape == (2, 3, 4)
    for label in range(3):
        single = label_token_scores(model, prompts[label].expand(2, -1, -1), tgt, tmask, ctx, cmask).logprobs
        torch.testing.assert_close(out[:, label], single, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out[:, 0], out[:, 1])  # the prompt conditions the scores


def test_token_representations_ignore_the_prompt_and_follow_the_context(tiny_llama):
    model = load_backbone(tiny_llama).model
    tgt, tmask = right_pad(TARGETS)
    ctx, cmask = right_pad(CONTEXTS)
    with_ctx = token_representations(model, tgt, tmask, ctx, cmask)
    without = token_representations(model, tgt, tmask)
    assert with_ctx.shape == (2, 4, 32) and not with_ctx.requires_grad
    # row 1's tokens read a context in one case and not in the other
    assert not torch.allclose(with_ctx[1, :4], without[1, :4])
    expected = model.base_model(input_ids=torch.tensor([TARGETS[1]])).last_hidden_state[0]
    torch.testing.assert_close(without[1], expected, rtol=1e-4, atol=1e-5)


def test_pooled_representation_is_the_token_weighted_mean():
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    weights = torch.tensor([[3.0, 1.0, 7.0]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(pooled_representation(hidden, weights, mask), torch.tensor([[0.75, 0.25]]))


def test_label_prefix_left_pads_so_every_row_ends_with_its_context():
    prompt = torch.ones(2, 2, 3)
    ctx = torch.arange(2 * 3 * 3, dtype=torch.float32).view(2, 3, 3) + 10
    cmask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    prefix, mask = label_prefix(prompt, ctx, cmask)
    assert prefix.shape == (2, 5, 3)
    assert mask.tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    assert torch.equal(prefix[1, 2:4], prompt[1]) and torch.equal(prefix[1, 4], ctx[1, 0])
    assert torch.equal(prefix[0, 2:], ctx[0])
    same, full = label_prefix(prompt)
    assert same is prompt and full.tolist() == [[1, 1], [1, 1]]


def test_loglik_ratio_hand_example():
    # 1 example, 3 labels, 2 tokens (second is padding)
    lp = torch.tensor([[[-1.0, -9.0], [-3.0, -9.0], [-5.0, -9.0]]])
    ratio = label_loglik_ratio(lp, torch.tensor([0]), torch.tensor([[1, 0]]))
    torch.testing.assert_close(ratio, torch.tensor([-1.0 - (-4.0)]))
