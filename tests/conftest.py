import os
import sys
from pathlib import Path

import pytest
import torch

# Nothing downloads at test time; a hub lookup fails at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models are faster on one thread, and two test threads would fight over the 2 cores.
# SYNTHTUNE_TEST_THREADS changes it (scripts/golden_kernels.py checks the stored numbers with 2 threads too).
torch.set_num_threads(int(os.environ.get("SYNTHTUNE_TEST_THREADS", "1")))
sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_tiny_gemma3, build_tiny_gpt2, build_tiny_llama, build_tiny_t5  # noqa: E402


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> str:
    """Folder of a 2-layer, hidden-32 random Llama with a small BPE tokenizer."""
    return str(build_tiny_llama(tmp_path_factory.mktemp("tiny-llama")))


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> str:
    """Folder of a 2-layer, hidden-32 random GPT-2 with a small BPE tokenizer."""
    return str(build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2")))


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory) -> str:
    """Folder of a 2-layer, d_model-32 random T5 (encoder-decoder) with sentinel tokens."""
    return str(build_tiny_t5(tmp_path_factory.mktemp("tiny-t5")))


@pytest.fixture(scope="session")
def tiny_gemma3(tmp_path_factory) -> str:
    """Folder of a 2-layer, hidden-32 random Gemma 3 (its embedding scales token rows by √d)."""
    return str(build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3")))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Context-vector and featuriser caches go to a per-session temp folder, never ~/.cache.

    The converted bundled model is the exception: it is reused from the user's cache so the
    integration tests do not repeat the 30 s GGUF conversion.
    """
    from synthtune.components.backbone import model_cache_dir

    monkeypatch.setenv("SYNTHTUNE_MODEL_CACHE", str(model_cache_dir()))
    monkeypatch.setenv("SYNTHTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "synthtune-cache"))
    yield
