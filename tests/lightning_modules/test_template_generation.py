import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from helpers import composed_config
from synthtune.callbacks import JsonlPredictionWriter
from synthtune.components import text_generation
from synthtune.cli import run_cli
from synthtune.contract import PromptData
from synthtune.datamodules.prompts import PromptDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules import template_generation as tg
from synthtune.lightning_modules.template_generation import TemplateGenerationModule

REPO = Path(__file__).resolve().parents[2]


def numbered(*items):
    return "\n".join(f"{i}. {q}" for i, q in enumerate(items, start=1))


class Script:
    """A fake LLM: replies by prompt kind, and records every call."""

    def __init__(self, question=None, critique=None, refine=None, answer=None, capped=lambda kind, reply: False):
        self.replies = {"question": question, "critique": critique, "refine": refine, "answer": answer}
        self.capped = capped  # whether a reply "stopped at the length cap"
        self.calls = []
        self.caps = []  # the max_new_tokens each call asked for

    def __call__(self, prompts, seeds, temperature, max_new_tokens=None):
        out, capped = [], []
        for prompt, seed in zip(prompts, seeds):
            kind = ("critique" if prompt.startswith("CRIT") else "refine" if prompt.startswith("REF")
                    else "answer" if prompt.startswith("ANS") or self.replies["question"] is None else "question")
            self.calls.append((kind, prompt, seed, temperature))
            reply = self.replies[kind]
            out.append(reply(prompt, len([c for c in self.calls if c[0] == kind])) if callable(reply) else reply)
            capped.append(self.capped(kind, out[-1]))
            self.caps.append((kind, max_new_tokens))
        return out, capped


def module(tiny, **kw):
    templates = {"question_template": "Q: give {num_questions}", "critique_template": "CRIT {question}",
                 "refine_template": "REF {question} || {critique}"}
    templates.setdefault("max_new_tokens", 8)
    templates.update(kw)
    return TemplateGenerationModule(backbone=tiny, task=None, **templates)


EXAMPLES = ("Ann has 3 pens.", "Bo runs 5 km.", "Cy bakes 7 pies.")


def seeded(tiny, **kw):
    """A module whose templates insert the training example, connected to three examples."""
    kw = {"question_template": "EX<{example}> give {num_questions}", "critique_template": "CRIT {question} vs {example}",
          "refine_template": "REF {question} || {critique}", **kw}
    m = module(tiny, **kw)
    m.connect(PromptData(source="train.jsonl", train_texts=EXAMPLES))
    return m


def test_pt_rows_ids_parse_reports_and_dropped_items(tiny_llama):
    m = module(tiny_llama, num_questions=3)
    outputs = [numbered("a one", "b two"), "no list here", numbered("c", "d", "e", "f", "g"),
               "Here are two:\n- x?\n-\n- y?", "Sure, here:\nfirst line\nsecond line"]
    rows = m.questions_from([0, 1, 2, 3, 4], outputs, [0, 1, 2, 0, 1])
    assert [(r["id"], r["text"], r["example_index"]) for r in rows] == [
        (0, "a one", 0), (1, "b two", 0), (6, "c", 2), (7, "d", 2), (8, "e", 2), (9, "x?", 0), (10, "y?", 0),
        (12, "first line", 1), (13, "second line", 1)]
    assert all(r["method"] == "pt" and r["params"] == rows[0]["params"] for r in rows)
    assert rows[0]["params"]["temperature"] == 2.0 and rows[0]["params"]["num_questions"] == 3
    assert rows[2]["parse"] == {"style": "numbered", "found": 5, "dropped": 0, "extra": 2}
    assert rows[5]["parse"] == {"style": "bulleted", "found": 2, "dropped": 1, "extra": 0}
    assert rows[7]["parse"] == {"style": "lines", "found": 2, "dropped": 1, "extra": 0}  # the header line
    assert m.counts == {"requests": 5, "style_numbered": 2, "style_none": 1, "style_bulleted": 1, "style_lines": 1,
                        "malformed": 1, "questions": 9, "extra_dropped": 2, "dropped_items": 2}


def test_pt_requests_insert_their_training_example_with_per_request_seeds(tiny_llama, monkeypatch):
    m = seeded(tiny_llama, num_questions=2)
    fake = Script(question=lambda p, n: numbered(f"q{n}a", f"q{n}b"))
    monkeypatch.setattr(m, "generate", fake)
    batch = {"index": torch.tensor([4, 5, 6]), "question": [None] * 3, "source_id": [None] * 3,
             "example_index": [1, 2, 0]}
    rows = m.predict_step(batch, 0)
    assert [r["id"] for r in rows] == [8, 9, 10, 11, 12, 13]
    assert [c[1] for c in fake.calls] == ["EX<Bo runs 5 km.> give 2", "EX<Cy bakes 7 pies.> give 2",
                                          "EX<Ann has 3 pens.> give 2"]
    assert [c[2] for c in fake.calls] == [tg.stage_seed(0, i, "question") for i in (4, 5, 6)]
    assert len({c[2] for c in fake.calls}) == 3 and fake.calls[0][3] == 2.0
    assert [r["example_index"] for r in rows] == [1, 1, 2, 2, 0, 0]
    assert rows[0]["params"]["num_examples"] == 3


def test_pt_sr_critiques_and_rewrites_each_question_until_stop(tiny_llama, monkeypatch):
    m = seeded(tiny_llama, mode="pt_sr", num_questions=2, max_rounds=5, critique_temperature=0.5)
    # question "fine" is accepted once rewritten; question "bad" is never accepted
    fake = Script(critique=lambda p, n: "Stop." if p.startswith("CRIT better fine") else "It is vague.",
                  refine=lambda p, n: "Rewritten problem: better " + p[len("REF "):p.index(" || ")])
    monkeypatch.setattr(m, "generate", fake)
    texts, rounds, stopped, _ = m.refine([20, 21], ["fine", "bad"], ["Ann has 3 pens.", "Bo runs 5 km."])
    assert rounds == [1, 5] and stopped == [True, False]
    assert texts == ["better fine", "better better better better better bad"]
    assert m.counts["stopped"] == 1 and m.counts["refinements"] == 6
    # each critique sees one question (and its request's example), never a list
    critiques = [c for c in fake.calls if c[0] == "critique"]
    assert critiques[0][1] == "CRIT fine vs Ann has 3 pens." and critiques[1][1] == "CRIT bad vs Bo runs 5 km."
    assert len(critiques) == 2 + 5
    # the rewrite sees the question and its critique; seeds depend on the question id, the stage and the round
    assert fake.calls[2] == ("refine", "REF fine || It is vague.", tg.stage_seed(0, 20, "refine", 1), 0.5)
    assert critiques[2][2] == tg.stage_seed(0, 20, "critique", 2) != critiques[3][2] == tg.stage_seed(0, 21, "critique", 2)
    assert {c[3] for c in fake.calls} == {0.5}


def test_pt_sr_round_limit_and_malformed_rewrites(tiny_llama, monkeypatch):
    m = module(tiny_llama, mode="pt_sr", num_questions=2, max_rounds=2)
    fake = Script(critique="Item 1 is unclear.", refine="Here is the rewritten problem:\n")
    monkeypatch.setattr(m, "generate", fake)
    texts, rounds, stopped, _ = m.refine([3], ["keep me"], [""])
    assert texts == ["keep me"] and rounds == [2] and stopped == [False]  # a rewrite without a question keeps it
    assert m.counts["malformed_refinements"] == 2
    assert [c[0] for c in fake.calls] == ["critique", "refine", "critique", "refine"]


def test_pt_sr_rows_record_draft_rounds_and_stop_per_question(tiny_llama, monkeypatch):
    m = seeded(tiny_llama, mode="pt_sr", num_questions=3, max_rounds=2)
    fake = Script(question=numbered("good one", "weak one", "odd one"),
                  critique=lambda p, n: "Stop" if "good" in p.split(" vs ")[0] else "Needs numbers.",
                  refine=lambda p, n: "good " + p[len("REF "):p.index(" ||")].split()[0] if "weak" in p else "")
    monkeypatch.setattr(m, "generate", fake)
    rows = m.predict_step({"index": torch.tensor([1]), "question": [None], "source_id": [None],
                           "example_index": [1]}, 0)
    assert [(r["id"], r["draft"], r["text"], r["rounds"], r["stopped"]) for r in rows] == [
        (3, "good one", "good one", 0, True), (4, "weak one", "good weak", 1, True), (5, "odd one", "odd one", 2, False)]
    assert all(r["method"] == "pt_sr" and r["example_index"] == 1 for r in rows)
    assert rows[0]["params"]["max_rounds"] == 2 and "{question}" in rows[0]["params"]["critique_template"]
    assert "CRIT good one vs Bo runs 5 km." in [c[1] for c in fake.calls]


def test_rows_say_whether_their_reply_stopped_at_the_cap(tiny_llama, monkeypatch):
    # request 1's list reply ran into the cap; in PT_SR, a parsed rewrite replaces the draft's flag with its own
    m = seeded(tiny_llama, mode="pt_sr", num_questions=2, max_rounds=1, max_new_tokens=40, critique_max_new_tokens=12)
    fake = Script(question=lambda p, n: numbered(f"q{n}a", f"q{n}b"),
                  critique=lambda p, n: "Stop" if "q1a" in p else "Vague.",
                  refine=lambda p, n: "long rewrite" if "q2b" in p else "",
                  capped=lambda kind, reply: (kind == "question" and reply.startswith("1. q2")) or reply == "long rewrite")
    monkeypatch.setattr(m, "generate", fake)
    rows = m.predict_step({"index": torch.tensor([0, 1]), "question": [None] * 2, "source_id": [None] * 2,
                           "example_index": [0, 1]}, 0)
    assert [(r["text"], r["hit_cap"]) for r in rows] == [("q1a", False), ("q1b", False), ("q2a", True),
                                                         ("long rewrite", True)]
    # the list reply gets max_new_tokens; each critique and rewrite gets critique_max_new_tokens
    assert {k: c for k, c in fake.caps} == {"question": None, "critique": 12, "refine": 12}
    assert rows[0]["params"]["critique_max_new_tokens"] == 12
    monkeypatch.setattr(m, "generate", Script(question=numbered("a"), capped=lambda kind, reply: True))
    m.hparams.mode = "pt"
    assert [r["hit_cap"] for r in m.predict_step({"index": torch.tensor([2]), "question": [None], "source_id": [None],
                                                   "example_index": [2]}, 0)] == [True]
    with pytest.raises(SynthtuneError, match="critique_max_new_tokens"):
        module(tiny_llama, critique_max_new_tokens=0)


def test_pt_sr_with_zero_rounds_is_pt(tiny_llama, monkeypatch):
    m = module(tiny_llama, mode="pt_sr", max_rounds=0)
    fake = Script(critique="Stop")
    monkeypatch.setattr(m, "generate", fake)
    assert m.refine([0], ["a"], [""]) == (["a"], [0], [False], [False]) and fake.calls == []


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
    # Fig. 9's GSM8K answer template (the default template set is the paper's)
    assert fake.calls[0][1] == "Please answer the following question that tests reasoning:\nWhat is 2+2?\nAnswer:"
    assert rows[0]["params"]["answer_template"] == templated.answer_template


def test_generation_goes_through_generate_from_text(tiny_llama, monkeypatch):
    seen = {}

    def fake_generate(model, tokenizer, prompts, seeds, settings, **kw):
        seen.update(kw, prompts=list(prompts), seeds=list(seeds), **vars(settings))
        return ["1. x"] * len(prompts), [False] * len(prompts)

    monkeypatch.setattr(tg, "generate_from_text", fake_generate)
    m = seeded(tiny_llama, top_p=0.9, system_prompt="Be brief.")
    m.predict_step({"index": torch.tensor([1]), "question": [None], "source_id": [None], "example_index": [1]}, 0)
    assert seen["use_chat_template"] is True and seen["system"] == "Be brief." and seen["top_p"] == 0.9
    assert seen["temperature"] == 2.0 and seen["max_new_tokens"] == 8 and seen["prompts"] == ["EX<Bo runs 5 km.> give 10"]


CHAT = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.mark.parametrize("use_chat_template", [True, False])
def test_the_backbones_chat_template_wraps_the_seeded_prompt(tiny_llama, monkeypatch, use_chat_template):
    m = seeded(tiny_llama, use_chat_template=use_chat_template, system_prompt="Be brief.", max_new_tokens=2)
    monkeypatch.setattr(m.tokenizer, "chat_template", CHAT)  # the tokenizer is shared: undo it after the test
    rendered = []
    real_render = text_generation.render_prompt

    def spy(*args, **kw):
        rendered.append(real_render(*args, **kw))
        return rendered[-1]

    monkeypatch.setattr(text_generation, "render_prompt", spy)
    m.predict_step({"index": torch.tensor([0, 1]), "question": [None] * 2, "source_id": [None] * 2,
                    "example_index": [0, 1]}, 0)
    if use_chat_template:
        assert rendered == [f"<|system|>Be brief.<|end|><|user|>EX<{e}> give 10<|end|><|assistant|>" for e in EXAMPLES[:2]]
    else:
        assert rendered == [f"EX<{e}> give 10" for e in EXAMPLES[:2]]


def test_real_generation_is_batch_independent(tiny_llama):
    m = module(tiny_llama, max_new_tokens=6)
    prompts, seeds = ["Q: give 3", "Q: give 3", "Q: give 3"], [11, 12, 13]
    together, capped = m.generate(prompts, seeds, 1.0)
    alone = [m.generate([p], [s], 1.0)[0][0] for p, s in zip(prompts, seeds)]
    assert together == alone and len(set(together)) > 1
    # a random tiny model rarely samples EOS within 6 tokens: a capped reply is flagged as such
    assert len(capped) == 3 and all(isinstance(c, bool) for c in capped) and any(capped)


class FakeLLM:
    """Deterministic numbered lists keyed by request, for whole predict runs."""

    def __init__(self):
        self.requests = []
        self.prompts = []

    def __call__(self, prompts, seeds, temperature, max_new_tokens=None):
        self.requests.extend(seeds)
        self.prompts.extend(prompts)
        return [numbered(f"question {s % 1000} a", f"question {s % 1000} b") for s in seeds], [False] * len(seeds)


def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in EXAMPLES))
    return str(path)


def run_predict(m, dm, root, callbacks=()):
    writer = JsonlPredictionWriter(output_path=str(root / "samples.jsonl"), preview=0)
    trainer = pl.Trainer(default_root_dir=str(root), accelerator="cpu", devices=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[writer, *callbacks])
    trainer.predict(m, dm, return_predictions=False)
    return [json.loads(line) for line in (root / "samples.jsonl").read_text().splitlines()]


class StopAfter(pl.Callback):
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        raise RuntimeError("simulated crash")


def test_predict_writes_resumable_round_robin_rows(tiny_llama, tmp_path, monkeypatch):
    m = module(tiny_llama, num_questions=2, question_template="EX<{example}> give {num_questions}")
    fake = FakeLLM()
    monkeypatch.setattr(m, "generate", fake)

    def data():
        return PromptDataModule(backbone=tiny_llama, train_path=train_file(tmp_path), text_template="{question}",
                                num_requests=5, batch_size=2)

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_predict(m, data(), tmp_path, callbacks=[StopAfter()])
    assert len(fake.requests) == 2
    rows = run_predict(m, data(), tmp_path)
    assert [r["id"] for r in rows] == list(range(10))
    assert fake.requests == [tg.stage_seed(0, r, "question") for r in range(5)]  # finished requests not asked again
    # request r inserts training example r mod 3, before and after the resume
    assert fake.prompts == [f"EX<{EXAMPLES[r % 3]}> give 2" for r in range(5)]
    assert [r["example_index"] for r in rows] == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1]
    assert rows[4]["request"] == 2 and rows[4]["text"].startswith("question")


def test_modes_must_match_the_data_and_fit_is_refused(tiny_llama, tmp_path):
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"text": "What?"}) + "\n")
    with pytest.raises(SynthtuneError, match="answer mode needs questions"):
        run_predict(module(tiny_llama, mode="answer"), PromptDataModule(backbone=tiny_llama), tmp_path)
    with pytest.raises(SynthtuneError, match="reads no input"):
        run_predict(module(tiny_llama), PromptDataModule(backbone=tiny_llama, path=str(questions)), tmp_path)
    with pytest.raises(SynthtuneError, match=r"insert a training \{example\} but the data has none"):
        run_predict(module(tiny_llama, question_template="EX {example}"), PromptDataModule(backbone=tiny_llama), tmp_path)
    with pytest.raises(SynthtuneError, match="no pt template has an {example} field"):
        run_predict(module(tiny_llama), PromptDataModule(backbone=tiny_llama, train_path=train_file(tmp_path),
                                                         text_template="{question}"), tmp_path)
    with pytest.raises(SynthtuneError, match="answer mode inserts no training examples"):
        module(tiny_llama, mode="answer").connect(PromptData(has_questions=True, train_texts=EXAMPLES))
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
    # PT_SR critiques one question: a list placeholder is refused, but only where the template is used
    with pytest.raises(SynthtuneError, match=r"critique_template uses unknown placeholder\(s\) \{questions\}"):
        module(tiny_llama, mode="pt_sr", critique_template="CRIT {questions}")
    assert "critique" not in module(tiny_llama, mode="pt", critique_template="CRIT {questions}").templates
    with pytest.raises(SynthtuneError, match="mode must be"):
        TemplateGenerationModule(backbone=tiny_llama, mode="sr")
    with pytest.raises(SynthtuneError, match="top_p"):
        TemplateGenerationModule(backbone=tiny_llama, top_p=0.0)


#: Each task's training fold and how a row becomes the example its PT template inserts.
TRAINING_FOLDS = {"gsm8k": ("data/gsm8k/train.jsonl", "{question}"), "mbpp": ("data/mbpp/train.jsonl", "{text}"),
                  "boolq": ("data/boolq/passage_train.jsonl", "{passage}\n{question}")}


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
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    if model["mode"] == "answer":
        questions = tmp_path / "q.jsonl"
        questions.write_text("".join(json.dumps({"id": i, "text": f"Tom has {i} pens."}) + "\n" for i in range(3)))
        args += ["--data.init_args.path", str(questions)]
    elif not model.get("question_template") and not data.get("train_path"):
        # the task's preset template inserts a training example: seed it from the task's training fold
        train_path, text_template = TRAINING_FOLDS[model["task"]]
        args += ["--data.init_args.train_path", train_path, "--data.init_args.text_template", text_template]
    cli = run_cli(args)
    assert cli.model.counts["requests" if config["model"]["init_args"]["mode"] != "answer" else "questions"] > 0


class RecordingLLM:
    """Stands in for ``generate_from_text`` in CLI runs: replies by prompt kind, records every prompt."""

    def __init__(self):
        self.prompts = []

    def __call__(self, model, tokenizer, prompts, seeds, **kw):
        self.prompts.extend(prompts)
        replies = []
        for prompt in prompts:
            if prompt.startswith("Here is an example") and "Critique" in prompt:
                # stop at once for questions ending in "a", never for the others
                replies.append("Stop" if prompt.split("written in the same style:\n\n")[1].split("\n")[0].endswith(" a")
                               else "Add a number.")
            elif prompt.startswith("Here is an example"):
                replies.append("Sure! Here they are:\n\n1. new a\n2) new b\n3. \n\nHope this helps.")
            else:  # a rewrite
                replies.append("Rewritten problem: " + prompt.split("\n\n")[1] + " with 2 apples")
        return replies, [False] * len(replies)  # (texts, hit_cap)


@pytest.mark.parametrize("task", sorted(TRAINING_FOLDS))
def test_cli_seeds_every_request_with_the_next_training_example(task, tiny_llama, tmp_path, monkeypatch):
    """``synthtune predict`` with a task preset: request r's prompt holds training example r mod N."""
    monkeypatch.chdir(REPO)
    llm = RecordingLLM()
    monkeypatch.setattr(tg, "generate_from_text", llm)
    train_path, text_template = TRAINING_FOLDS[task]
    rows = [json.loads(line) for line in (REPO / train_path).read_text().splitlines()[:3]]
    examples = [text_template.format(**row) for row in rows]
    small = tmp_path / "train.jsonl"
    small.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "run" / "samples.jsonl"
    run_cli(["predict", "--model", "TemplateGenerationModule", "--model.init_args.backbone", tiny_llama,
             "--model.init_args.task", task, "--model.init_args.template_set", "synthtune",
             "--model.init_args.num_questions", "3",
             "--data", "PromptDataModule", "--data.init_args.train_path", str(small),
             "--data.init_args.text_template", text_template, "--data.init_args.num_requests", "4",
             "--data.init_args.batch_size", "3", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
             "--trainer.default_root_dir", str(tmp_path / "run"), "--writer.output_path", str(out)])
    question = tg.preset(task, "synthtune").question
    assert llm.prompts == [question.format(example=examples[r % 3], num_questions=3) for r in range(4)]
    assert all(f"\n\n{examples[r % 3]}\n\n" in llm.prompts[r] for r in range(4))
    written = [json.loads(line) for line in out.read_text().splitlines()]
    # two questions per request; the third item was empty (dropped and counted), ids are r * 3 + j
    assert [(r["id"], r["text"], r["example_index"]) for r in written] == [
        (r * 3 + j, f"new {'ab'[j]}", r % 3) for r in range(4) for j in range(2)]
    assert written[0]["parse"] == {"style": "numbered", "found": 2, "dropped": 1, "extra": 0}


def test_cli_pt_sr_refines_each_question_until_stop_or_max_rounds(tiny_llama, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    llm = RecordingLLM()
    monkeypatch.setattr(tg, "generate_from_text", llm)
    out = tmp_path / "run" / "samples.jsonl"
    cli = run_cli(["predict", "--model", "TemplateGenerationModule", "--model.init_args.backbone", tiny_llama,
                   "--model.init_args.mode", "pt_sr", "--model.init_args.max_rounds", "2",
                   "--model.init_args.template_set", "synthtune",
                   "--model.init_args.num_questions", "2", "--data", "PromptDataModule",
                   "--data.init_args.train_path", "data/gsm8k/train.jsonl", "--data.init_args.text_template",
                   "{question}", "--data.init_args.num_requests", "2", "--trainer.accelerator", "cpu",
                   "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
                   "--writer.output_path", str(out)])
    written = [json.loads(line) for line in out.read_text().splitlines()]
    # "new a" is accepted by the first critique; "new b" is rewritten in both rounds and never accepted
    assert [(r["id"], r["draft"], r["text"], r["rounds"], r["stopped"]) for r in written] == [
        (i, "new a", "new a", 0, True) if i % 2 == 0 else
        (i, "new b", "new b with 2 apples with 2 apples", 2, False) for i in range(4)]
    critiques = [p for p in llm.prompts if "Critique the new" in p]
    shown = [p.split("written in the same style:\n\n")[1].split("\n\nCritique")[0] for p in critiques]
    # one question per critique: round 1 sees the four drafts, round 2 only the two "new b" rewrites
    assert shown == ["new a", "new b", "new a", "new b", "new b with 2 apples", "new b with 2 apples"]
    assert cli.model.counts["stopped"] == 2 and cli.model.counts["refinements"] == 4


class PaperLLM:
    """Stands in for ``generate_from_text`` with the paper's templates (Figs. 8 and 11): a PT reply continues
    after "Question 1:"; the critique gives feedback; the rewrite of "new a" says 'Stop', the others are rewritten."""

    def __init__(self):
        self.prompts = []

    def __call__(self, model, tokenizer, prompts, seeds, **kw):
        self.prompts.extend(prompts)
        replies = []
        for prompt in prompts:
            if prompt.startswith("Consider the following"):
                replies.append("new a?\n\nQuestion 2: new b?\nQuestion 3: new c?")
            elif prompt.startswith("Please provide actionable feedback"):
                replies.append("Clear enough." if prompt.endswith("new a?") else "Add a number.")
            else:
                question = prompt.split("Question: ")[1].split("\n")[0]
                replies.append("Stop" if question == "new a?" else f"{question} with 2 apples")
        return replies, [True] * len(replies)  # (texts, hit_cap)


def test_cli_paper_templates_keep_question_1_and_stop_at_the_rewrite(tiny_llama, tmp_path, monkeypatch):
    """The default template set is the paper's: the PT prompt is Fig. 8 with the example, the reply's first
    (unnumbered) question is kept, and PT_SR stops a question when the Fig. 11 rewrite says 'Stop'."""
    monkeypatch.chdir(REPO)
    llm = PaperLLM()
    monkeypatch.setattr(tg, "generate_from_text", llm)
    out = tmp_path / "run" / "samples.jsonl"
    cli = run_cli(["predict", "--model", "TemplateGenerationModule", "--model.init_args.backbone", tiny_llama,
                   "--model.init_args.mode", "pt_sr", "--model.init_args.max_rounds", "2",
                   "--model.init_args.num_questions", "3", "--data", "PromptDataModule",
                   "--data.init_args.train_path", "data/gsm8k/train.jsonl", "--data.init_args.text_template",
                   "{question}", "--data.init_args.num_requests", "1", "--trainer.accelerator", "cpu",
                   "--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path / "run"),
                   "--writer.output_path", str(out)])
    first = json.loads((REPO / "data/gsm8k/train.jsonl").read_text().splitlines()[0])["question"]
    assert llm.prompts[0] == tg.preset("gsm8k").question.format(example=first, num_questions=3)
    assert llm.prompts[0].endswith("has a well-defined answer.\nQuestion 1:")
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["draft"], r["text"], r["rounds"], r["stopped"]) for r in written] == [
        (0, "new a?", "new a?", 0, True),
        (1, "new b?", "new b? with 2 apples with 2 apples", 2, False),
        (2, "new c?", "new c? with 2 apples with 2 apples", 2, False)]
    assert written[0]["parse"] == {"style": "numbered", "found": 3, "dropped": 0, "extra": 0}
    assert cli.model.counts["stopped"] == 1 and cli.model.counts["refinements"] == 4


def test_undiversified_template_asks_for_one_question(tiny_llama, monkeypatch):
    """Fig. 10: one question per request, the reply itself is the question; more than one is refused."""
    m = TemplateGenerationModule(backbone=tiny_llama, template_set="paper_undiversified", num_questions=1,
                                 temperature=1.0)
    assert m.templates["question"].startswith("Please generate a question that requires solving a grade-school")
    rows = m.questions_from([0, 1], ["Tom has 3 apples. How many?", "   "], [0, 1])
    assert [(r["id"], r["text"], r["parse"]["style"]) for r in rows] == [(0, "Tom has 3 apples. How many?", "single")]
    assert m.counts["malformed"] == 1
    with pytest.raises(SynthtuneError, match="paper_undiversified asks for one question per request"):
        TemplateGenerationModule(backbone=tiny_llama, template_set="paper_undiversified", num_questions=10)
