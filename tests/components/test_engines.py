"""Engines without vLLM: the sampling options' way into vLLM's SamplingParams, the engine choice and its mistakes,
the padding a prompt_embeds request drops, and the one-engine-per-node check. The tests that run vLLM are in
test_engines_vllm.py (``scripts/test.sh --engine vllm``)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from synthtune.components.engines import build_engine, sampling_params_kwargs
from synthtune.components.engines import vllm_engine
from synthtune.components.engines.native import NativeEngine, left_pad
from synthtune.components.engines.sampling_params import REPETITION_PENALTY_ARG
from synthtune.components.sampling import sample_from_prefix
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.backbone import load_backbone
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules import DawGenModule, SoftSRVModule, SynAlignGenerationModule, TemplateGenerationModule


def test_every_sampling_option_reaches_sampling_params():
    settings = SamplingSettings(temperature=0.7, top_p=0.9, max_new_tokens=33, repetition_penalty=1.2)
    kwargs = sampling_params_kwargs(settings, seed=123456789012345, eos_token_ids=[7, 2, 7])
    assert kwargs["temperature"] == 0.7 and kwargs["top_p"] == 0.9 and kwargs["max_tokens"] == 33
    assert kwargs["seed"] == 123456789012345  # the sample's own seed, not the run seed
    assert kwargs["stop_token_ids"] == [2, 7] and kwargs["ignore_eos"] is True  # exactly the native sampler's EOS set
    # the native sampler's penalty (generated tokens only) goes to synthtune's logits processor; vLLM's stays off
    assert kwargs["extra_args"] == {REPETITION_PENALTY_ARG: 1.2} and kwargs["repetition_penalty"] == 1.0
    assert kwargs["top_k"] == 0 and kwargs["n"] == 1 and kwargs["detokenize"] is False
    greedy = sampling_params_kwargs(SamplingSettings(temperature=0.0), seed=1, eos_token_ids=[0])
    assert greedy["temperature"] == 0.0 and greedy["extra_args"] == {REPETITION_PENALTY_ARG: 1.0}


@pytest.mark.parametrize("build", [
    lambda tiny, **kw: SoftSRVModule(backbone=tiny, parameterization="np", prompt_length=2, **kw),
    lambda tiny, **kw: DawGenModule(backbone=tiny, prompt_length=2, weight_mlp_size=8, **kw),
    lambda tiny, **kw: TemplateGenerationModule(backbone=tiny, **kw),
    lambda tiny, **kw: SynAlignGenerationModule(backbone=tiny, **kw),
], ids=["softsrv", "dawgen", "template_generation", "synalign"])
def test_every_generator_takes_an_engine_native_by_default(tiny_llama, build, monkeypatch):
    module = build(tiny_llama)
    assert isinstance(module.engine, NativeEngine) and "engine" not in module.generation_params()
    with pytest.raises(SynthtuneError, match=r"engine_options \['tensor_parallel_size'\] are vLLM's"):
        build(tiny_llama, engine_options={"tensor_parallel_size": 2})
    monkeypatch.setattr(vllm_engine, "vllm_installed", lambda: False)
    with pytest.raises(SynthtuneError, match="engine vllm needs vLLM, which is not installed") as info:
        build(tiny_llama, engine="vllm")
    assert "\n" not in str(info.value) and "scripts/setup.sh --engine vllm" in str(info.value)


def test_an_unknown_engine_is_one_line(tiny_llama):
    with pytest.raises(SynthtuneError, match="unknown engine 'tgi'; use native or vllm"):
        build_engine("tgi", None, load_backbone(tiny_llama))


def test_vllm_refuses_an_encoder_decoder_backbone(tiny_t5, monkeypatch):
    monkeypatch.setattr(vllm_engine, "vllm_installed", lambda: True)
    with pytest.raises(SynthtuneError, match="decoder-only models only.*use --model.init_args.engine native"):
        build_engine("vllm", None, load_backbone(tiny_t5))


def test_native_engine_on_token_ids_is_the_sampler_on_their_embeddings(tiny_llama):
    bb = load_backbone(tiny_llama)
    ids = [[5, 6, 7, 8], [9, 10]]
    settings = SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=6, repetition_penalty=1.3)
    got = NativeEngine().sample_ids(bb.model, ids, [11, 12], settings, [0], pad_token_id=1)
    input_ids, mask = left_pad(ids, 1, torch.device("cpu"))
    assert mask.tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]] and input_ids[1, :2].tolist() == [1, 1]
    want = sample_from_prefix(bb.model, bb.model.get_input_embeddings()(input_ids), [11, 12], 6, [0], temperature=1.0,
                              top_p=0.9, attention_mask=mask, return_finished=True, repetition_penalty=1.3)
    assert got == want


def test_a_prompt_embeds_request_drops_the_padding_the_native_sampler_masks():
    prefix = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    rows = vllm_engine.unpadded_rows(prefix, mask, torch.bfloat16)
    assert [tuple(r.shape) for r in rows] == [(2, 3), (4, 3)] and rows[0].dtype == torch.bfloat16
    assert torch.equal(rows[0].float(), prefix[0, 2:]) and torch.equal(rows[1].float(), prefix[1])
    assert [tuple(r.shape) for r in vllm_engine.unpadded_rows(prefix, None, torch.float32)] == [(4, 3), (4, 3)]


def _count_ranks(rank: int, world: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out[rank] = vllm_engine.ranks_per_host()
    finally:
        dist.destroy_process_group()


def test_ranks_on_one_node_are_counted_so_vllm_runs_one_engine_per_node():
    """Two DDP ranks on this machine: each learns that the node runs two processes (the engine refuses that)."""
    assert vllm_engine.ranks_per_host() == 1  # outside torch.distributed
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.get_context("spawn").Manager().dict()
    mp.start_processes(_count_ranks, args=(2, port, out), nprocs=2, start_method="spawn")
    assert dict(out) == {0: 2, 1: 2}


def test_the_sampler_hands_its_cache_to_transformers_before_and_after_the_rename():
    """vLLM 0.32 pins transformers < 5.20, whose forward takes ``past_key_values`` and silently ignores ``cache=``:
    the native sampler then decoded every step without its KV cache (test_engines_vllm.py's greedy comparisons
    caught it). It now passes the cache under the name the forward takes."""
    from synthtune.components.sampling import cache_argument

    def before(input_ids=None, past_key_values=None, use_cache=None, **kwargs):
        return None

    def after(input_ids=None, cache=None, use_cache=None, **kwargs):
        return None

    assert cache_argument(before) == "past_key_values" and cache_argument(after) == "cache"
