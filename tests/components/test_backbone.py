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
