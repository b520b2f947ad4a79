import torch
import torch.nn.functional as F

from synthtune.components.backbone import load_backbone
from synthtune.components.softsrv.prefix_lm import prefix_token_logprobs, reconstruction_loss


def _batch(tokenizer):
    enc = tokenizer(["Natalia sold clips to her friends", "Weng earns"], padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _reference_loss(model, prefix, ids, mask):
    """The same loss the slow way: full logits over [P; x], labels -100 on the prompt and padding."""
    tokens = model.get_input_embeddings()(ids)
    inputs = torch.cat([prefix, tokens], 1)
    full_mask = torch.cat([torch.ones(prefix.shape[:2], dtype=mask.dtype), mask], 1)
    labels = torch.cat([torch.full(prefix.shape[:2], -100), ids.masked_fill(mask == 0, -100)], 1)
    logits = model(inputs_embeds=inputs, attention_mask=full_mask).logits
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1))


def test_loss_matches_full_model_loss_on_x_tokens_only(tiny_llama):
    bb = load_backbone(tiny_llama)
    ids, mask = _batch(bb.tokenizer)
    prefix = torch.randn(2, 4, bb.hidden_size) * 0.1
    ours = reconstruction_loss(bb.model, prefix, ids, mask)
    torch.testing.assert_close(ours, _reference_loss(bb.model, prefix, ids, mask), rtol=1e-4, atol=1e-4)
    logp = prefix_token_logprobs(bb.model, prefix, ids, mask)
    assert logp.shape == ids.shape and bool((logp[mask == 0] == 0).all())
    torch.testing.assert_close(-logp.sum() / mask.sum(), ours, rtol=1e-5, atol=1e-5)


def test_gpt2_family_works_too(tiny_gpt2):
    bb = load_backbone(tiny_gpt2)
    ids, mask = _batch(bb.tokenizer)
    prefix = torch.randn(2, 3, bb.hidden_size) * 0.1
    torch.testing.assert_close(reconstruction_loss(bb.model, prefix, ids, mask),
                               _reference_loss(bb.model, prefix, ids, mask), rtol=1e-4, atol=1e-4)


def test_gradient_reaches_the_prefix_and_not_the_backbone(tiny_llama):
    bb = load_backbone(tiny_llama)
    ids, mask = _batch(bb.tokenizer)
    prefix = (torch.randn(2, 4, bb.hidden_size) * 0.1).requires_grad_()
    reconstruction_loss(bb.model, prefix, ids, mask).backward()
    assert prefix.grad is not None and prefix.grad.abs().sum() > 0
    assert all(p.grad is None for p in bb.model.parameters())
