"""docs/results/softsrv/downstream.py's pieces on a tiny random Llama: the NLL it reports, the LoRA loop, the CLI."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from synthtune.components.backbone import load_tokenizer
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.sft import add_lora, default_lora_targets, load_trainable_lm

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("downstream", REPO / "docs/results/softsrv/downstream.py")
downstream = importlib.util.module_from_spec(spec)
spec.loader.exec_module(downstream)

QUESTIONS = ["Tom has 3 pens. How many pens does he have?", "Ann buys 4 apples and eats one. How many are left?",
             "A bus holds 40 people. How many buses for 120 people?", "Bo runs 5 km a day. How far in a week?"]


def test_nll_per_token_is_the_mean_of_each_tokens_negative_log_probability(tiny_llama):
    """Batched, padded NLL equals summing -log p(x_t | x_<t) one unpadded sequence at a time."""
    tok = load_tokenizer(tiny_llama)
    model = load_trainable_lm(tiny_llama, "fp32").eval()
    seqs = downstream.encode(tok, QUESTIONS, max_length=64)
    assert len(seqs) == len(QUESTIONS) and all(s[-1] == tok.eos_token_id for s in seqs)
    total, count = 0.0, 0
    with torch.no_grad():
        for s in seqs:
            logp = torch.log_softmax(model(input_ids=torch.tensor([s])).logits[0, :-1].float(), -1)
            total -= float(logp[torch.arange(len(s) - 1), torch.tensor(s[1:])].sum())
            count += len(s) - 1
    nll, tokens = downstream.nll_per_token(model, seqs, tok.pad_token_id, batch_size=3)
    assert tokens == count and nll == pytest.approx(total / count, rel=1e-5)
    assert downstream.encode(tok, QUESTIONS, max_length=5) == [s[:5] for s in seqs]


def test_lora_tuning_lowers_the_nll_of_its_data_and_is_seeded(tiny_llama):
    tok = load_tokenizer(tiny_llama)
    seqs = downstream.encode(tok, QUESTIONS, max_length=64)

    def tuned(seed):
        model = load_trainable_lm(tiny_llama, "fp32")
        torch.manual_seed(seed)  # the adapters' initialisation
        model = add_lora(model, 4, 8, 0.0, default_lora_targets(model))
        before = downstream.nll_per_token(model, seqs, tok.pad_token_id)[0]
        losses = downstream.lora_tune(model, seqs, tok.pad_token_id, steps=30, batch_size=2, lr=1e-2, seed=seed)
        return before, losses, downstream.nll_per_token(model, seqs, tok.pad_token_id)[0]

    before, losses, after = tuned(0)
    assert after < before - 0.1 and len(losses) == 30
    assert tuned(0)[1] == losses  # same seed, same run
    with pytest.raises(SynthtuneError, match="no trainable parameters"):
        downstream.lora_tune(load_trainable_lm(tiny_llama, "fp32").requires_grad_(False), seqs, 0, 1, 1, 1e-3, 0)


def test_main_writes_the_floor_and_a_tuned_result_and_checks_its_input(tiny_llama, tmp_path):
    rows = [{"id": 9 - i, "text": q} for i, q in enumerate(QUESTIONS * 2)]
    (tmp_path / "s.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"question": q}) + "\n" for q in QUESTIONS))
    common = dict(evaluation=str(tmp_path / "test.jsonl"), backbone=tiny_llama, max_length=64)
    floor = downstream.main(str(tmp_path / "floor.json"), untuned=True, **common)
    tuned = downstream.main(str(tmp_path / "t.json"), train=str(tmp_path / "s.jsonl"), rows=6, steps=20,
                            batch_size=2, lr=1e-2, lora_r=4, **common)
    assert tuned["nll_per_token"] < floor["nll_per_token"] and tuned["eval_tokens"] == floor["eval_tokens"]
    assert tuned["rows"] == 6 and tuned["distinct_rows"] == 4 and math.isclose(tuned["perplexity"],
                                                                               math.exp(tuned["nll_per_token"]))
    assert json.loads((tmp_path / "t.json").read_text()) == tuned
    # the rows used are the 6 with the smallest ids
    assert downstream.first_rows(tmp_path / "s.jsonl", "text", 6) == [r["text"] for r in sorted(rows, key=lambda r: r["id"])][:6]
    with pytest.raises(SynthtuneError, match="holds 8 rows, fewer than --rows 500"):
        downstream.main(str(tmp_path / "u.json"), train=str(tmp_path / "s.jsonl"), **common)
    with pytest.raises(SynthtuneError, match="exactly one of --train FILE"):
        downstream.main(str(tmp_path / "v.json"), **common)


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO / f"docs/results/softsrv/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pick_temperature_takes_the_best_mauve_against_train(tmp_path, capsys):
    pick = load_script("pick_temperature")
    assert pick.choose({1.0: 0.2, 2.0: 0.4, 4.0: 0.1}) == 2.0
    assert pick.choose({1.0: 0.4, 2.0: 0.4, 4.0: None}) == 1.0  # a tie goes to the lower temperature
    with pytest.raises(SynthtuneError, match="no temperature gave enough PT questions"):
        pick.choose({4.0: None})
    for t, mauve in (("1", 0.3), ("2", 0.5), ("4", None)):
        (tmp_path / f"t{t}").mkdir()
        rows = [{"id": i, "text": f"q{i % 3}?", "hit_cap": i == 0} for i in range(4)]
        (tmp_path / f"t{t}" / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if mauve is not None:
            (tmp_path / f"t{t}" / "samples.mauve-train.json").write_text(json.dumps({"mean": mauve, "std": 0.01}))
    pick.main(str(tmp_path), "1", "2", "4")
    choice = json.loads((tmp_path / "choice.json").read_text())
    assert choice["temperature"] == 2.0 and choice["candidates"]["4.0"]["mauve_train"] is None
    assert choice["candidates"]["1.0"]["distinct_rows"] == 3 and choice["candidates"]["1.0"]["ended_at_eos"] == 0.75
