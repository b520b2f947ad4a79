"""Prompts made of token embeddings are exactly what the model reads for those tokens (issue 19).

Gemma scales token rows by √d inside its embedding forward, so a prompt built from raw
``.weight`` rows starts ~√d too small. Every check runs on each family the tests build.
"""

from __future__ import annotations

import pytest
import torch

from synthtune.components.backbone import embed_tokens, load_backbone, random_token_embeddings
from synthtune.components.dawgen.label_prompts import label_token_scores
from synthtune.components.sampling import sample_from_prefix
from synthtune.components.softsrv.prefix_lm import reconstruction_loss
from synthtune.lightning_modules.dawgen import DawGenModule

FAMILIES = ["tiny_llama", "tiny_gpt2", "tiny_t5", "tiny_gemma3"]
TEXT = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."


@pytest.fixture(params=FAMILIES)
def folder(request) -> str:
    return request.getfixturevalue(request.param)


def _ids(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def test_embed_tokens_is_the_embedding_forward_and_scales_only_on_gemma(folder, request):
    model = load_backbone(folder).model
    ids = torch.tensor([[3, 17, 40, 99]])
    rows = model.get_input_embeddings().weight[ids]
    vectors = embed_tokens(model, ids)
    if "gemma" in request.node.callspec.id:  # Gemma3TextScaledWordEmbedding: row · √d
        assert torch.allclose(vectors, rows * model.config.hidden_size ** 0.5)
    else:
        assert torch.equal(vectors, rows)


def test_prompt_initialised_from_tokens_equals_their_input_vectors(folder):
    bb = load_backbone(folder)
    ids = torch.randint(0, bb.model.get_input_embeddings().num_embeddings, (2, 8),
                        generator=torch.Generator().manual_seed(7))
    want = bb.model.get_input_embeddings()(ids).float()
    assert torch.equal(random_token_embeddings(bb.model, (2, 8), seed=7), want)
    # the methods' own prompts start there: DawGen's label prompts, then the label names at their ends
    module = DawGenModule(backbone=folder, num_labels=2, prompt_length=8, seed=7)
    assert torch.equal(module.label_prompts.prompts.detach(), want)
    module.name_prompts(["great", "terrible"])
    name_ids = bb.tokenizer(" terrible", add_special_tokens=False)["input_ids"]
    assert 0 < len(name_ids) < 8
    tail = module.label_prompts.prompts.detach()[1, -len(name_ids):]
    assert torch.equal(tail, bb.model.get_input_embeddings()(torch.tensor(name_ids)).float())


def test_prefix_lm_loss_with_a_token_prompt_equals_the_models_own_loss(folder):
    bb = load_backbone(folder)
    model, ids = bb.model, _ids(bb.tokenizer, TEXT)
    prompt_ids, target = ids[:, :6], ids[:, 6:]
    prompt = embed_tokens(model, prompt_ids)
    mask = torch.ones_like(target)
    with torch.no_grad():
        scores = label_token_scores(model, prompt, target, mask)  # DawGen / prompt tuning scoring
        if bb.is_encoder_decoder:  # T5: the prompt is the encoder input, the target is decoded
            own = model(input_ids=prompt_ids, labels=target).loss
        else:
            own = model(input_ids=ids, labels=torch.cat([torch.full_like(prompt_ids, -100), target], 1)).loss
            assert torch.allclose(reconstruction_loss(model, prompt, target, mask), own, atol=1e-5)  # SoftSRV Eq. 1
    assert torch.allclose(-scores.logprobs.mean(), own, atol=1e-5)


def test_greedy_sampling_from_a_token_prefix_equals_generate_on_the_ids(folder):
    bb = load_backbone(folder)
    model, tok = bb.model, bb.tokenizer
    ids = torch.cat([_ids(tok, TEXT)[:, :8], _ids(tok, "Weng earns $12 an hour for babysitting today.")[:, :8]])
    eos = tok.eos_token_id
    with torch.no_grad():
        if bb.is_encoder_decoder:  # T5 generation (DawGen) feeds the prompt as encoder inputs_embeds
            got = model.generate(inputs_embeds=embed_tokens(model, ids), attention_mask=torch.ones_like(ids),
                                 max_new_tokens=8, do_sample=False)
            want = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                  do_sample=False)
            assert got.tolist() == want.tolist()
            return
        got = sample_from_prefix(model, embed_tokens(model, ids), seeds=[0, 1], max_new_tokens=8,
                                 eos_token_ids=[eos], temperature=0.0)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                             eos_token_id=eos, pad_token_id=tok.pad_token_id)[:, ids.shape[1]:].tolist()
    want = [row[: row.index(eos)] if eos in row else row for row in out]
    assert got == want and any(want)
