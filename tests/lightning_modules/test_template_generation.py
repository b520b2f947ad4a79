import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from helpers import composed_config
from synthtune.callbacks import JsonlPredictionWriter
from synthtune.cli import run_cli
from synthtune.datamodules.prompts import PromptDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules import template_generation as tg
from synthtune.lightning_modules.template_generation import TemplateGenerationModule

REPO = Path(__file__).resolve().parents[2]


def numbered(*items):
    return "\n".join(f"{i}. {q}" for i, q in enumerate(items, start=1))


class Script:
    """A fake LLM: replies by prompt kind, and records every call."""

    def __init__(self, question=None, critique=None, refine=None, answer=None):
        self.replies = {"question": question, "critique": critique, "refine": refine, "answer": answer}
        self.calls = []

    def __call__(self, prompts, seeds, temperature):
        out = []
        for prompt, seed in zip(prompts, seeds):
            kind = ("critique" if prompt.startswith("CRIT") else "refine" if prompt.startswith("REF")
                    else "answer" if prompt.startswith("ANS") or self.replies["question"] is None else "question")
            self.calls.append((kind, prompt, seed, temperature))
            reply = self.replies[kind]
            out.append(reply(prompt, len([c for c in self.calls if c[0] == kind])) if callable(reply) else reply)
        return out


def module(tiny, **kw):
    templates = {"question_template": "Q: give {num_questions}", "critique_template": "CRIT {questions}",
                     "refine_template": "REF {questions} || {critique}"}
    templates.setdefault("max_new_tokens", 8)
    templates.update(kw)
    return TemplateGenerationModule(backbone=tiny, task=None, **templates)


def test_pt_rows_ids_malformed_and_extra_items(tiny_llama):
    m = module(tiny_llama, num_questions=3)
    outputs = {0: numbered("a one", "b two"), 1: "no list here", 2: numbered("c", "d", "e", "f", "g")}
    rows = m.questions_from([0, 1, 2], [outputs[0], outputs[1], outputs[2]])
    assert [(r["id"], r["text"]) for r in rows] == [(0, "a one"), (1, "b two"), (6, "c"), (7, "d"), (8, "e")]
    assert all(r["method"] == "pt" and r["params"] == rows[0]["params"] for r in rows)
    assert rows[0]["params"]["temperature"] == 2.0 and rows[0]["params"]["num_questions"] == 3
    assert m.counts == {"requests": 3, "malformed": 1, "questions": 5, "extra_dropped": 2}


def test_pt_predict_step_uses_per_request_seeds(tiny_llama, monkeypatch):
    m = module(tiny_llama, num_questions=2)
    fake = Script(question=lambda p, n: numbered(f"q{n}a", f"q{n}b"))
    monkeypatch.setattr(m, "generate", fake)
    rows = m.predict_step({"index": torch.tensor([4, 5]), "question": [None, None], "source_id": [None, None]}, 0)
    assert [r["id"] for r in rows] == [8, 9, 10, 11]
    assert [c[1] for c in fake.calls] == ["Q: give 2", "Q: give 2"]
    assert fake.calls[0][2] == tg.stage_seed(0, 4, "question") != fake.calls[1][2] == tg.stage_seed(0, 5, "question")
    assert fake.calls[0][3] == 2.0


def test_pt_sr_stops_when_the_critique_says_stop(tiny_llama, monkeypatch):
    m = module(tiny_llama, mode="pt_sr", num_questions=2, max_rounds=5, critique_temperature=0.5)
    # request 0: critique says Stop in round 2; request 1: never satisfied
    fake = Script(question=numbered("draft x", "draft y"),
                  critique=lambda p, n: "Stop." if "refined" in p and "r0" in p else "Problem 2 is vague.",
                  refine=lambda p, n: numbered(f"refined {'r0' if 'r0' in p else 'r1'}", "two"))
    monkeypatch.setattr(m, "generate", fake)
    # tell the two requests apart in their prompts: the fake's refine reads 'r0'/'r1' from the critique input
    m.critique_template = "CRIT {questions}"
    drafts, rounds, stopped = m.refine([0, 1], [numbered("draft r0", "y"), numbered("draft r1", "y")])
    assert rounds == [1, 5] and stopped == [True, False]
    assert drafts[0] == numbered("refined r0", "two")
    assert m.counts["stopped"] == 1 and m.counts["refinements"] == 6
    # the critique sees the parsed draft as a clean numbered list; critique/refine use critique_temperature
    assert fake.calls[0][1] == "CRIT 1. draft r0\n2. y"
    assert {c[3] for c in fake.calls if c[0] in ("critique", "refine")} == {0.5}


def test_pt_sr_round_limit_and_malformed_rewrites(tiny_llama, monkeypatch):
    m = module(tiny_llama, mode="pt_sr", num_questions=2, max_rounds=2)
    fake = Script(critique="Item 1 is unclear.", refine="sorry, no list")
    monkeypatch.setattr(m, "generate", fake)
    drafts, rounds, stopped = m.refine([3], [numbered("keep me", "and me")])
    assert rounds == [2] and stopped == [False]
    assert drafts == [numbered("keep me", "and me")]  # rewrites without a list keep the previous draft
    assert m.counts["malformed_refinements"] == 2
    assert [c[0] for c in fake.calls] == ["critique", "refine", "critique", "refine"]
    rows = m.questions_from([3], drafts, rounds, stopped)
    assert [(r["id"], r["rounds"], r["stopped"], r["method"]) for r in rows] == [(6, 2, False, "pt_sr"), (7, 2, False, "pt_sr")]


def test_pt_sr_with_zero_rounds_is_pt(tiny_llama, monkeypatch):
    m = module(tiny_llama, mode="pt_sr", max_rounds=0)
    fake = Script(critique="Stop")
    monkeypatch.setattr(m, "generate", fake)
    assert m.refine([0], ["1. a"]) == (["1. a"], [0], [False]) and fake.calls == []


def test_answer_mode_rows_with_and_without_a_template(tiny_llama, monkeypatch):
    bare = module(tiny_llama, mode="answer", temperature=0.0)
    fake = Script(answer=lambda p, n: "" if "empty" in p else f"answer to {p}")
    monkeypatch.setattr(bare, "generate", fake)
    rows = bare.predict_step({"index": torch.tensor([0, 2, 3]), "question": ["What is 2+2?", "empty one", "Why?"],
                              "source_id": [17, None, 5]}, 0)
    assert [(r["id"], r["question"], r["answer"]) for r in rows] == [
        (0, "What is 2+2?", "answer to What is 2+2?"), (3, "Why?", "answer to Why?")]
    assert rows[0]["source_id"] == 17 and rows[0]["method"] == "answer" and rows[0]["params"]["answer_template"] is None
    assert bare.counts["empty_answers"] == 1 and bare.counts["answers"] == 2
    templated = TemplateGenerationModule(backbone=tiny_llama, mode="answer", task="gsm8k", use_answer_template=True)
    fake = Script(answer="#### 4")
    monkeypatch.setattr(templated, "generate", fake)
    rows = templated.predict_step({"index": torch.tensor([0]), "question": ["What is 2+2?"], "source_id": [None]}, 0)
    assert fake.calls[0][1].startswith("Solve the following math word problem") and "Problem: What is 2+2?" in fake.calls[0][1]
    assert rows[0]["params"]["answer_template"] == templated.answer_template


def test_generation_goes_through_generate_from_text(tiny_llama, monkeypatch):
    seen = {}

    def fake_generate(model, tokenizer, prompts, seeds, **kw):
        seen.update(kw, prompts=list(prompts), seeds=list(seeds))
        return ["1. x"] * len(prompts)

    monkeypatch.setattr(tg, "generate_from_text", fake_generate)
    m = module(tiny_llama, top_p=0.9, system_prompt="Be brief.")
    m.predict_step({"index": torch.tensor([1]), "question": [None], "source_id": [None]}, 0)
    assert seen["use_chat_template"] is True and seen["system"] == "Be brief." and seen["top_p"] == 0.9
    assert seen["temperature"] == 2.0 and seen["max_new_tokens"] == 8 and seen["prompts"] == ["Q: give 10"]


def test_real_generation_is_batch_independent(tiny_llama):
    m = module(tiny_llama, max_new_tokens=6)
    prompts, seeds = ["Q: give 3", "Q: give 3", "Q: give 3"], [11, 12, 13]
    together = m.generate(prompts, seeds, 1.0)
    alone = [m.generate([p], [s], 1.0)[0] for p, s in zip(prompts, seeds)]
    assert together == alone and len(set(together)) > 1


class FakeLLM:
    """Deterministic numbered lists keyed by request, for whole predict runs."""

    def __init__(self):
        self.requests = []

    def __call__(self, prompts, seeds, temperature):
        self.requests.extend(seeds)
        return [numbered(f"question {s % 1000} a", f"question {s % 1000} b") for s in seeds]


def run_predict(m, dm, root, callbacks=()):
    writer = JsonlPredictionWriter(output_path=str(root / "samples.jsonl"), preview=0)
    trainer = pl.Trainer(default_root_dir=str(root), accelerator="cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[writer, *callbacks])
    trainer.predict(m, dm, return_predictions=False)
    return [json.loads(line) for line in (root / "samples.jsonl").read_text().splitlines()]


class StopAfter(pl.Callback):
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        raise RuntimeError("simulated crash")


def test_predict_writes_resumable_rows(tiny_llama, tmp_path, monkeypatch):
    m = module(tiny_llama, num_questions=2)
    fake = FakeLLM()
    monkeypatch.setattr(m, "generate", fake)
    dm = PromptDataModule(backbone=tiny_llama, num_requests=5, batch_size=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_predict(m, dm, tmp_path, callbacks=[StopAfter()])
    assert len(fake.requests) == 2
    rows = run_predict(m, PromptDataModule(backbone=tiny_llama, num_requests=5, batch_size=2), tmp_path)
    assert [r["id"] for r in rows] == list(range(10))
    assert len(fake.requests) == 5  # the two finished requests were not asked again
    assert rows[4]["request"] == 2 and rows[4]["text"].startswith("question")


def test_modes_must_match_the_data_and_fit_is_refused(tiny_llama, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"text": "What?"}) + "\n")
    with pytest.raises(SynthtuneError, match="answer mode needs questions"):
        run_predict(module(tiny_llama, mode="answer"), PromptDataModule(backbone=tiny_llama), tmp_path)
    with pytest.raises(SynthtuneError, match="reads no input"):
        run_predict(module(tiny_llama), PromptDataModule(backbone=tiny_llama, path=str(questions)), tmp_path)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, max_steps=1, enable_progress_bar=False)
    with pytest.raises(SynthtuneError, match="nothing to train"):
        trainer.fit(module(tiny_llama), PromptDataModule(backbone=tiny_llama))
    with pytest.raises(SynthtuneError, match="instead of `synthtune validate`"):
        trainer.validate(module(tiny_llama), PromptDataModule(backbone=tiny_llama))


def test_bad_templates_and_settings(tiny_llama):
    with pytest.raises(SynthtuneError, match="unknown placeholder"):
        module(tiny_llama, question_template="give {n} questions")
    with pytest.raises(SynthtuneError, match="needs critique_template"):
        TemplateGenerationModule(backbone=tiny_llama, task=None, mode="pt_sr", question_template="give {num_questions}")
    with pytest.raises(SynthtuneError, match="mode must be"):
        TemplateGenerationModule(backbone=tiny_llama, mode="sr")
    with pytest.raises(SynthtuneError, match="top_p"):
        TemplateGenerationModule(backbone=tiny_llama, top_p=0.0)


@pytest.mark.parametrize("name", ["gsm8k", "mbpp", "boolq", "demo", "answers_gsm8k"])
def test_configs_predict_on_a_tiny_model(name, tiny_llama, tmp_path, monkeypatch):
    """Each config runs one predict batch."""
    monkeypatch.chdir(REPO)
    path = REPO / "configs" / "template_generation" / f"{name}.yaml"
    config = composed_config(path)  # a task file holds only what differs from base.yaml
    assert config["synthtune_subcommand"] == "predict"
    args = ["predict", "--config", str(path), "--model.init_args.backbone", tiny_llama,
            "--model.init_args.max_new_tokens", "4", "--trainer.fast_dev_run", "true",
            "--trainer.default_root_dir", str(tmp_path / "run")]
    if config["model"]["init_args"]["mode"] == "answer":
        questions = tmp_path / "q.jsonl"
        questions.write_text("".join(json.dumps({"id": i, "text": f"Tom has {i} pens."}) + "\n" for i in range(3)))
        args += ["--data.init_args.path", str(questions)]
    cli = run_cli(args)
    assert cli.model.counts["requests" if config["model"]["init_args"]["mode"] != "answer" else "questions"] > 0
