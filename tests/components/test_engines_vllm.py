"""The vLLM engine on a tiny random Llama (CPU): seeds fix a sample whatever its batch, greedy decoding from
prompt_embeds gives the native sampler's text for SoftSRV and DawGen, and a killed predict resumes with every id
once. Skipped where vLLM is not installed: ``bash scripts/test.sh --engine vllm`` runs them in .venv-vllm.

Every test shares one engine (one ``vllm.LLM`` per process, model and options): starting one takes 30-90 s here.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

vllm = pytest.importorskip("vllm", reason="vLLM is not installed here; `bash scripts/test.sh --engine vllm` runs "
                                          "these tests in .venv-vllm")

from synthtune.components.engines import sampling_params_kwargs  # noqa: E402
from synthtune.components.engines.native import NativeEngine  # noqa: E402
from synthtune.components.engines.sampling_params import REPETITION_PENALTY_ARG  # noqa: E402
from synthtune.components.engines.vllm_engine import VLLMEngine  # noqa: E402
from synthtune.components.padding import right_pad  # noqa: E402
from synthtune.components.sampling_settings import SamplingSettings  # noqa: E402
from synthtune.errors import SynthtuneError  # noqa: E402
from synthtune.lightning_modules import DawGenModule, SoftSRVModule, TemplateGenerationModule  # noqa: E402
from tiny_models import build_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
#: The engine every test uses (a second set of options would start a second engine).
OPTIONS = {"max_model_len": 256, "max_num_seqs": 16, "kv_cache_memory_bytes": 2**27}


@pytest.fixture(scope="session")
def vllm_llama(tmp_path_factory) -> str:
    """A 2-layer random Llama whose heads are 32 wide (vLLM's CPU attention takes head sizes 32, 64, ..., not the
    other tiny models' 8), with the tests' BPE tokenizer; weights drawn wide (std 0.2) so greedy text varies."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("vllm-llama")
    tokenizer = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         initializer_range=0.2, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def softsrv(folder: str, engine: str = "vllm", **kw) -> SoftSRVModule:
    """An SS_MC prompt with random weights (std 0.3, so that each of the random standardised contexts gives a
    prefix of its own, as a trained prompt's do)."""
    module = SoftSRVModule(backbone=folder, parameterization="mc", context_encoder="lm_static", prompt_length=3,
                           mlp_hidden=16, engine=engine, engine_options=OPTIONS if engine == "vllm" else None, **kw)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.soft_prompt.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    z = torch.randn(8, module.context_dim, generator=generator)
    module._contexts["train"] = z
    module.context_norm.fit(z)
    return module.eval()


def test_every_sampling_option_is_a_sampling_params_field():
    settings = SamplingSettings(temperature=0.7, top_p=0.9, max_new_tokens=33, repetition_penalty=1.2)
    params = vllm.SamplingParams(**sampling_params_kwargs(settings, seed=2**62 + 5, eos_token_ids=[3, 0]))
    assert (params.temperature, params.top_p, params.max_tokens, params.seed) == (0.7, 0.9, 33, 2**62 + 5)
    assert params.stop_token_ids == [0, 3] and params.ignore_eos and params.extra_args == {REPETITION_PENALTY_ARG: 1.2}


def test_soft_prompt_samples_are_reproducible_by_seed_and_independent_of_the_batch(vllm_llama):
    module = softsrv(vllm_llama, temperature=1.0, top_p=0.9, repetition_penalty=1.3, max_new_tokens=10)
    index, seeds = torch.arange(6), [101, 102, 103, 104, 105, 106]
    texts, hit_cap = module.generate_with_ends(index, seeds)
    assert len(set(texts)) == 6  # six different samples: the seeds and prompts matter
    assert module.generate_with_ends(index, seeds) == (texts, hit_cap)  # the same seeds: the same texts
    # rows 4 and 1 alone, in the other order, with a newcomer: each row's text depends only on its prompt and seed
    alone = module.generate(torch.tensor([4, 7, 1]), [105, 999, 102])
    assert alone[0] == texts[4] and alone[2] == texts[1]
    assert module.generate(index[:1], [107])[0] != texts[0]  # another seed, another sample


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_greedy_softsrv_from_prompt_embeds_is_the_native_samplers_text(vllm_llama, penalty):
    module = softsrv(vllm_llama, temperature=0.0, max_new_tokens=12, repetition_penalty=penalty)
    index = torch.arange(8)
    native = module.generate_with_ends(index, list(range(8)), engine=NativeEngine())
    assert len(set(native[0])) > 1  # the prefixes lead to different texts
    assert module.generate_with_ends(index, list(range(8))) == native


@pytest.mark.parametrize("penalty", [1.0, 1.5])
def test_greedy_dawgen_with_embedded_context_tokens_is_the_native_samplers_text(vllm_llama, penalty):
    """Q_l followed by the first sentence's tokens, embedded by the backbone's embedding module; rows of different
    lengths, so the native sampler left-pads and vLLM gets each row without its padding."""
    module = DawGenModule(backbone=vllm_llama, prompt_length=3, weight_mlp_size=8, temperature=0.0, max_new_tokens=12,
                          repetition_penalty=penalty, engine="vllm", engine_options=OPTIONS).eval()
    tok = module.tokenizer
    firsts = ["Tom has 3 apples.", "A train leaves at noon and travels 60 miles.", "Why?", "She reads 12 pages a day."]
    ctx, cmask = right_pad([tok(t)["input_ids"] for t in firsts], tok.pad_token_id)
    labels = torch.tensor([0, 1, 0, 1])
    native = module.generate_with_ends(labels, [1, 2, 3, 4], ctx, cmask, engine=NativeEngine())
    assert len(set(native[0])) > 1
    assert module.generate_with_ends(labels, [1, 2, 3, 4], ctx, cmask) == native


def test_greedy_text_prompts_are_the_native_samplers_text(vllm_llama):
    """Template baselines and answers: the rendered prompts go to vLLM as synthtune's own token ids."""
    module = TemplateGenerationModule(backbone=vllm_llama, mode="answer", temperature=0.0, max_new_tokens=10,
                                      repetition_penalty=1.3, engine="vllm", engine_options=OPTIONS)
    prompts = ["Tom has 3 apples. How many now?", "A train travels 60 miles.", "Why?"]
    texts = module.generate(prompts, [1, 2, 3], 0.0)
    native_engine, module.engine = module.engine, NativeEngine()
    assert module.generate(prompts, [1, 2, 3], 0.0) == texts
    module.engine = native_engine
    assert module.generation_params()["engine"] == "vllm"  # rows record the engine: a resume never mixes the two


def test_unknown_and_reserved_engine_options_are_one_line(vllm_llama):
    with pytest.raises(SynthtuneError, match=r"unknown engine_options \['tensor_paralel_size'\]"):
        SoftSRVModule(backbone=vllm_llama, parameterization="np", engine="vllm",
                      engine_options={"tensor_paralel_size": 2})
    with pytest.raises(SynthtuneError, match=r"engine_options \['dtype'\] are set by synthtune"):
        SoftSRVModule(backbone=vllm_llama, parameterization="np", engine="vllm", engine_options={"dtype": "half"})


# ------------------------------------------------------------------ resume after a kill
ROWS = [{"question": f"Sam has {i} pens and gives away {i // 2}. How many are left?"} for i in range(16)]


def run_args(verb, folder, data, root, *extra):
    """``synthtune fit|predict`` of a small SoftSRV run on ``folder`` (predict: with the vLLM engine)."""
    args = [verb, "--config", str(REPO / "configs/softsrv/demo.yaml"), "--model.init_args.backbone", folder,
            "--model.init_args.prompt_length", "4", "--model.init_args.context_encoder", "lm_static",
            "--model.init_args.max_new_tokens", "6", "--data.init_args.path", str(data),
            "--data.init_args.limit", "null", "--data.init_args.batch_size", "2", "--data.init_args.num_samples", "60",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.callbacks", "[]", "--trainer.logger", "false", *extra]
    if verb == "predict":
        args += ["--model.init_args.engine", "vllm", "--model.init_args.engine_options", json.dumps(OPTIONS),
                 "--ckpt_path", str(root / "checkpoints" / "last.ckpt")]
    return args


def test_a_killed_vllm_predict_resumes_with_every_id_once(vllm_llama, tmp_path, capsys):
    """A real SIGKILL of `synthtune predict --model.init_args.engine vllm` once some batches are on disk; the same
    command then writes only the missing ids, and the file equals an uninterrupted run's."""
    from cli_runner import run_synthtune

    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    root = tmp_path / "run"
    code, err = run_synthtune(run_args("fit", vllm_llama, data, root, "--trainer.max_steps", "1"), capsys)
    assert code == 0, err

    def predict(output):
        return run_args("predict", vllm_llama, data, root, "--writer.output_path", str(output))

    reference = tmp_path / "reference.jsonl"
    code, err = run_synthtune(predict(reference), capsys)
    assert code == 0, err

    out = tmp_path / "samples.jsonl"
    shard = Path(f"{out}.rank0.partial.jsonl")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS)]), OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-m", "synthtune.cli", *predict(out)],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and child.poll() is None:
            if shard.is_file() and len(shard.read_text().splitlines()) >= 4:
                break
            time.sleep(0.02)
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        os.killpg(child.pid, signal.SIGKILL)  # the run and any engine process it started
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    written = [json.loads(line)["id"] for line in shard.read_text().splitlines() if line.endswith("}")]
    assert 4 <= len(written) < 60 and not out.exists()

    code, err = run_synthtune(predict(out), capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(60))  # every id once
    expected = [json.loads(line) for line in reference.read_text().splitlines()]
    assert [r["text"] for r in rows] == [r["text"] for r in expected]  # the killed run's rows are the same samples
    assert rows[0]["params"]["engine"] == "vllm"
