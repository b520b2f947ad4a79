import time
from pathlib import Path

import pytest
import torch

from synthtune.components import backbone as bbmod
from synthtune.components.backbone import convert_gguf, load_backbone, parse_dtype, resolve_backbone
from synthtune.errors import SynthtuneError


def test_local_folder_loads_frozen_and_in_eval_mode(tiny_llama):
    bb = load_backbone(tiny_llama)
    assert not any(p.requires_grad for p in bb.model.parameters())
    assert not bb.model.training
    assert bb.tokenizer.pad_token_id is not None
    assert load_backbone(tiny_llama) is bb  # one load per process


def test_bf16_dtype(tiny_llama):
    bb = load_backbone(tiny_llama, "bf16")
    assert bb.model.get_input_embeddings().weight.dtype == torch.bfloat16


def test_unknown_backbone_offline_is_one_fast_line():
    start = time.time()
    with pytest.raises(SynthtuneError, match="unknown backbone 'nobody/no-such-model'.*offline"):
        resolve_backbone("nobody/no-such-model")
    assert time.time() - start < 10


def test_missing_paths_and_bad_dtype(tmp_path):
    with pytest.raises(SynthtuneError, match="GGUF file not found"):
        resolve_backbone(str(tmp_path / "model.gguf"))
    with pytest.raises(SynthtuneError, match="model folder not found"):
        resolve_backbone("./no/such/folder")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SynthtuneError, match="without config.json"):
        resolve_backbone(str(tmp_path / "empty"))
    with pytest.raises(SynthtuneError, match="fp32, bf16"):
        parse_dtype("int3")


def _convert_in_child(gguf, barrier, queue, tiny):
    import transformers

    real_model = transformers.AutoModelForCausalLM.from_pretrained
    real_tok = transformers.AutoTokenizer.from_pretrained

    def fake_model(folder, gguf_file=None, **kw):
        barrier.wait(timeout=60)  # both processes are converting at the same time
        return real_model(tiny, **kw)

    transformers.AutoModelForCausalLM.from_pretrained = fake_model
    transformers.AutoTokenizer.from_pretrained = lambda folder, gguf_file=None, **kw: real_tok(tiny)
    queue.put(str(convert_gguf(gguf, "fake")))


def test_racing_conversions_leave_one_complete_cache(tiny_llama, tmp_path, monkeypatch):
    """Two processes converting the same GGUF at once: both get the same complete folder."""
    import multiprocessing

    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setenv("SYNTHTUNE_MODEL_CACHE", str(tmp_path / "models"))
    ctx = multiprocessing.get_context("fork")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_convert_in_child, args=(gguf, barrier, queue, tiny_llama)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    results = [queue.get(timeout=5) for _ in procs]
    assert results[0] == results[1]
    folder = Path(results[0])
    assert (folder / "config.json").is_file() and (folder / bbmod._CONVERSION_MARKER).is_file()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [folder.name]  # no temp folders left
    assert load_backbone(str(folder)).hidden_size == 32


def test_encoder_decoder_backbones_load_as_seq2seq(tiny_t5):
    bb = load_backbone(tiny_t5)
    assert bb.is_encoder_decoder and bb.hidden_size == 32
    assert "<extra_id_0>" in bb.tokenizer.get_vocab()
    assert not any(p.requires_grad for p in bb.model.parameters())


# ---------------------------------------------------------------- GPU-ready training options
def _prefix_loss(model, seed=0):
    """SoftSRV's Eq. 1 loss of a padded batch under a trainable random prefix, and that prefix."""
    from synthtune.components.softsrv.prefix_lm import reconstruction_loss

    gen = torch.Generator().manual_seed(seed)
    d = model.get_input_embeddings().embedding_dim
    prefix = torch.randn(2, 3, d, generator=gen).requires_grad_(True)
    ids = torch.randint(2, 200, (2, 7), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return reconstruction_loss(model, prefix, ids, mask), prefix


def test_tiny_llama_loads_with_sdpa_and_matches_eager(tiny_llama):
    from transformers import AutoModelForCausalLM

    bb = load_backbone(tiny_llama)
    assert bb.attn_implementation == "sdpa"
    eager = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation="eager").eval()
    assert eager.config._attn_implementation == "eager"
    sdpa_loss, _ = _prefix_loss(bb.model)
    eager_loss, _ = _prefix_loss(eager)
    torch.testing.assert_close(sdpa_loss, eager_loss, rtol=1e-5, atol=1e-6)


def test_architectures_without_sdpa_fall_back_to_eager(tiny_llama, caplog):
    calls = []

    class NoSdpa:
        @staticmethod
        def from_pretrained(source, dtype, attn_implementation):
            calls.append(attn_implementation)
            if attn_implementation == "sdpa":
                raise ValueError("Foo does not support an attention implementation through "
                                 "torch.nn.functional.scaled_dot_product_attention yet.")
            return "eager model"

    assert bbmod._from_pretrained(NoSdpa, tiny_llama, torch.float32) == "eager model"
    assert calls == ["sdpa", "eager"]
    assert "eager attention" in caplog.text


def test_gradient_checkpointing_recomputes_and_keeps_the_prompt_gradient(tiny_llama):
    plain = load_backbone(tiny_llama)
    ckpt = load_backbone(tiny_llama, gradient_checkpointing=True)
    assert ckpt is not plain and ckpt.model is not plain.model  # the option never leaks into the shared model
    assert load_backbone(tiny_llama, gradient_checkpointing=True) is ckpt
    layer_runs = {"plain": 0, "ckpt": 0}
    stored = {"plain": 0, "ckpt": 0}
    for key, bb in (("plain", plain), ("ckpt", ckpt)):
        bb.model.model.layers[0].mlp.register_forward_pre_hook(
            lambda *_, key=key: layer_runs.__setitem__(key, layer_runs[key] + 1))
    grads = {}
    for key, bb in (("plain", plain), ("ckpt", ckpt)):
        def pack(t, key=key):
            stored[key] += t.numel()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss, prefix = _prefix_loss(bb.model)
        loss.backward()
        grads[key] = (loss.detach(), prefix.grad)
    assert layer_runs == {"plain": 1, "ckpt": 2}  # the checkpointed layer ran again in backward
    assert stored["ckpt"] < 0.6 * stored["plain"]  # ...because its activations were not kept
    torch.testing.assert_close(grads["ckpt"][0], grads["plain"][0], rtol=0, atol=0)
    torch.testing.assert_close(grads["ckpt"][1], grads["plain"][1], rtol=1e-6, atol=1e-7)
    assert not any(p.requires_grad for p in ckpt.model.parameters())
    # Eval everywhere (no dropout) but the layers' own checkpointing flag.
    assert not ckpt.model.model.layers[0].mlp.training and ckpt.model.model.layers[0].training


def test_gradient_checkpointing_unsupported_is_one_line():
    class NoCheckpointing(torch.nn.Module):
        supports_gradient_checkpointing = False

    with pytest.raises(SynthtuneError, match="does not support activation checkpointing"):
        bbmod.enable_gradient_checkpointing(NoCheckpointing(), "foo")


def test_compile_compiles_the_backbone_forward_and_keeps_the_loss(tiny_llama, monkeypatch):
    # Real torch.compile (dynamo graph capture) with the "eager" backend: inductor's C++ build takes
    # minutes on this 2-core CPU; the GPU path is the same call with the inductor backend.
    monkeypatch.setattr(bbmod, "COMPILE_BACKEND", "eager")
    seen = []
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append(kw) or real(fn, **kw))
    plain = load_backbone(tiny_llama)
    compiled = load_backbone(tiny_llama, compile=True)
    assert seen == [{"backend": "eager", "dynamic": True}]
    assert compiled.model.base_model._compiled_call_impl is not None
    assert plain.model.base_model._compiled_call_impl is None
    (a, pa), (b, pb) = _prefix_loss(plain.model), _prefix_loss(compiled.model)
    a.backward()
    b.backward()
    torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pb.grad, pa.grad, rtol=1e-5, atol=1e-7)


def test_checkpointed_backbone_generates_the_same_tokens(tiny_gpt2):
    # GPT-2 drops its KV cache when the whole model is in training mode; only the layers' flag is set.
    from synthtune.components.sampling import sample_from_prefix

    plain = load_backbone(tiny_gpt2).model
    ckpt = load_backbone(tiny_gpt2, gradient_checkpointing=True).model
    assert not ckpt.transformer.training and ckpt.transformer.h[0].training
    prefix = torch.randn(3, 2, plain.get_input_embeddings().embedding_dim, generator=torch.Generator().manual_seed(1))
    kwargs = dict(seeds=[0, 1, 2], max_new_tokens=6, eos_token_ids=[-1], batch_size=3)
    assert sample_from_prefix(ckpt, prefix, **kwargs) == sample_from_prefix(plain, prefix, **kwargs)


def test_frozen_linears_are_column_major_with_the_same_outputs(tiny_llama):
    from transformers import AutoModelForCausalLM

    bb = load_backbone(tiny_llama)
    linears = [m for m in bb.model.modules() if isinstance(m, torch.nn.Linear)]
    assert bb.model.get_output_embeddings() in linears  # the LM head too, still tied to the embeddings
    assert bb.model.get_output_embeddings().weight is bb.model.get_input_embeddings().weight
    assert linears and all(m.weight.t().is_contiguous() and not m.weight.is_contiguous() for m in linears)
    assert bbmod.column_major_linears(bb.model) == 0  # idempotent
    plain = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids = torch.randint(0, plain.config.vocab_size, (3, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(bb.model(ids).logits, plain(ids).logits, rtol=1e-5, atol=1e-5)
    params = list(bbmod.row_major(plain).parameters())
    assert params and all(p.is_contiguous() for p in params)


def test_fine_tuning_copy_is_row_major_again(tiny_llama):
    from synthtune.lightning_modules.fine_tuning import FineTuningModule

    ft = FineTuningModule(backbone=tiny_llama, num_labels=2, mode="head")
    assert all(p.is_contiguous() for p in ft.model.parameters())
    assert not load_backbone(tiny_llama).model.base_model.layers[0].mlp.up_proj.weight.is_contiguous()


def test_linears_keep_their_layout_where_cuda_is_available(tiny_llama, monkeypatch):
    monkeypatch.setattr(bbmod, "_loaded", {})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    model = load_backbone(tiny_llama).model
    assert all(p.is_contiguous() for p in model.parameters())
