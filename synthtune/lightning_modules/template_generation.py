"""Prompt-template generation with a frozen LLM (SoftSRV paper, App. A.2 and C baselines, and step 3).

mode ``pt``:     question template filled with training example ``r mod N`` → list → one row per question
mode ``pt_sr``:  as ``pt``, then each question on its own: critique → rewrite, stopping when the critique or
                 the rewrite says "Stop" (Fig. 11's refine template says it), for at most ``max_rounds`` rounds
mode ``answer``: each input question (bare, or inside ``answer_template``) → one answer row

Nothing is trained: run it with ``synthtune predict``. Every generation goes through
:func:`synthtune.components.text_generation.generate_from_text` (chat template for chat models,
per-sample seeds), and every seed depends only on the run seed, the request or question id and the
stage, so outputs do not depend on the batch size and a resumed run regenerates nothing it already wrote.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from typing import Any, Literal

import torch

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.softsrv.template_prompts import (
    ParsedList,
    parse_list,
    parse_question,
    placeholders,
    preset,
    prime_reply,
    says_stop,
)
from synthtune.components.sampling import sample_seed
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.text_generation import generate_from_text
from synthtune.contract import PromptData
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.flat_options import FlatBackboneOptions
from synthtune.lightning_modules.generator_options import GeneratorOptions
from synthtune.lightning_modules.predict_only import PredictOnlyModule
from synthtune.templates import Template
from synthtune.registry import method

log = logging.getLogger(__name__)

#: The templates each mode fills.
MODE_TEMPLATES: dict[str, tuple[str, ...]] = {
    "pt": ("question",),
    "pt_sr": ("question", "critique", "refine"),
    "answer": (),
}


def stage_seed(base_seed: int, item: int, stage: str, round_index: int = 0) -> int:
    """A seed for one generation call that depends only on the run seed, the item (request or
    question id) and the stage."""
    return sample_seed(base_seed, item, "template", stage, round_index)


@method
class TemplateGenerationModule(GeneratorOptions, FlatBackboneOptions, PredictOnlyModule):
    """PT / PT_SR question generation and answer generation from natural-language templates.

    Args:
        backbone: the frozen LM (decoder-only): a name or its spec (:class:`BackboneSpec`).
        mode: ``pt`` (template with a training example → list of new questions), ``pt_sr`` (PT, then
            critique-and-rewrite of each question) or ``answer`` (answer the input questions of the data).
        task: preset (``gsm8k``, ``mbpp``, ``boolq``) that fills every template left ``None``;
            ``None`` requires the templates the mode uses.
        template_set: which preset wording fills them: ``paper`` (the paper's Appendix C, Figs. 8, 9, 11),
            ``paper_undiversified`` (Fig. 10, gsm8k, one question per request: ``num_questions`` 1) or
            ``synthtune`` (our wording from before Appendix C was available; the earlier results used it).
        question_template: PT prompt; may use ``{example}`` (the request's training example, which
            then needs ``data.train_path``) and ``{num_questions}``.
        critique_template: PT_SR critique of one question; may use ``{question}``, ``{example}``.
        refine_template: PT_SR rewrite of one question; may use ``{question}``, ``{critique}``, ``{example}``.
        answer_template: answer prompt with ``{question}``; ``None`` (or ``""``) passes each question
            bare. The PT baseline's answers use the task's template; SoftSRV's use none.
        use_answer_template: in ``answer`` mode, whether to fill ``answer_template`` from ``task`` when
            it is ``None`` (the PT baseline); ``False`` passes bare questions (SoftSRV step 3).
        num_questions: questions asked for per PT request (the paper asks for 10).
        max_rounds: most critique-and-rewrite rounds per PT_SR question.
        sampling: how PT questions and answers are sampled (:class:`SamplingSettings`; a PT reply holds a whole
            list of questions within ``max_new_tokens``).
        critique_temperature: temperature of the PT_SR critique and rewrite; ``None`` uses ``sampling.temperature``.
        critique_max_new_tokens: longest PT_SR critique or rewrite of one question; ``None`` uses
            ``sampling.max_new_tokens`` (one question needs far fewer tokens than a list of ``num_questions``).
        max_prompt_tokens: prompts are cut to their last this many tokens.
        use_chat_template: render prompts with the tokenizer's chat template (when it has one).
        system_prompt: optional system turn for chat models.
        seed: seed of every sample's random stream.
    """

    data_kind = PromptData

    def __init__(
        self,
        backbone: BackboneSpec | str = DEFAULT_BACKBONE,
        mode: Literal["pt", "pt_sr", "answer"] = "pt",
        task: str | None = "gsm8k",
        template_set: Literal["paper", "paper_undiversified", "synthtune"] = "paper",
        question_template: Template | None = None,
        critique_template: Template | None = None,
        refine_template: Template | None = None,
        answer_template: Template | None = None,
        use_answer_template: bool = False,
        num_questions: int = 10,
        max_rounds: int = 3,
        sampling: SamplingSettings = SamplingSettings(temperature=2.0, max_new_tokens=512),
        critique_temperature: float | None = None,
        critique_max_new_tokens: int | None = None,
        max_prompt_tokens: int = 1024,
        use_chat_template: bool = True,
        system_prompt: str | None = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in MODE_TEMPLATES:
            raise SynthtuneError(f"mode must be pt, pt_sr or answer, got {mode!r}")
        if num_questions < 1 or max_rounds < 0 or max_prompt_tokens < 1:
            raise SynthtuneError("need num_questions ≥ 1, max_rounds ≥ 0 and max_prompt_tokens ≥ 1")
        if critique_temperature is not None and critique_temperature < 0:
            raise SynthtuneError(f"critique_temperature must be ≥ 0 or null, got {critique_temperature}")
        if critique_max_new_tokens is not None and critique_max_new_tokens < 1:
            raise SynthtuneError(f"critique_max_new_tokens must be ≥ 1 or null, got {critique_max_new_tokens}")
        self.sampling = self.flat_sampling(sampling)
        spec = self.flat_backbone(backbone)
        if template_set == "paper_undiversified" and task and num_questions != 1:
            raise SynthtuneError(f"template_set paper_undiversified asks for one question per request (Fig. 10); "
                                 f"set --model.init_args.num_questions 1, got {num_questions}")
        defaults = preset(task, template_set) if task else None
        # The list opener a preset question template ends with ("Question 1:"); "" for a template of the config's own.
        self.reply_prefix = defaults.reply_prefix if defaults and question_template is None else ""
        given = {"question": question_template, "critique": critique_template, "refine": refine_template}
        # Only the templates this mode fills are chosen and checked; the others are not used.
        self.templates: dict[str, str] = {}
        for kind in MODE_TEMPLATES[mode]:
            value = given[kind] if given[kind] is not None else (getattr(defaults, kind) if defaults else None)
            if not value:
                raise SynthtuneError(f"mode {mode} needs {kind}_template; set it in the config or pass task: gsm8k/mbpp/boolq")
            placeholders(value, kind)
            self.templates[kind] = value
        self.answer_template: str | None = None
        if mode == "answer" and (answer_template is not None or use_answer_template):
            value = answer_template if answer_template is not None else (defaults.answer if defaults else None)
            if value:
                placeholders(value, "answer")
                self.answer_template = value
        self.uses_example = any("example" in placeholders(t, kind) for kind, t in self.templates.items())
        self.examples: tuple[str, ...] = ()
        bb = self.load_frozen_backbone(spec)
        self.save_hyperparameters()
        if bb.is_encoder_decoder:
            raise SynthtuneError(f"template generation needs a decoder-only LM; {spec.name} is an encoder-decoder")
        self.start_engine(bb)
        self.counts: Counter[str] = Counter()

    # ---------------------------------------------------------------- setup
    def checkpoint_signature(self) -> dict[str, Any]:
        return {"method": "template_generation", "backbone": self.backbone_spec.name}

    @property
    def ids_per_item(self) -> int:
        return 1 if self.hparams.mode == "answer" else self.hparams.num_questions

    def connect(self, info: PromptData) -> None:
        """Answer mode reads questions; PT and PT_SR read the training examples their templates insert."""
        super().connect(info)
        mode = self.hparams.mode
        if mode == "answer" and not info.has_questions:
            raise SynthtuneError("answer mode needs questions: pass --data.init_args.path questions.jsonl "
                                 "--data.init_args.field text")
        if mode != "answer" and info.has_questions:
            raise SynthtuneError(f"mode {mode} writes new questions and reads no input; drop "
                                 f"--data.init_args.path or use --model.init_args.mode answer")
        if mode == "answer" and info.train_texts:
            raise SynthtuneError("answer mode inserts no training examples; drop --data.init_args.train_path")
        if self.uses_example and not info.train_texts:
            raise SynthtuneError(f"the {mode} templates insert a training {{example}} but the data has none; pass "
                                 f"--data.init_args.train_path data/<task>/train.jsonl --data.init_args.text_template "
                                 f"'{{question}}'")
        if mode != "answer" and info.train_texts and not self.uses_example:
            raise SynthtuneError(f"the data gives {len(info.train_texts)} training examples but no {mode} template "
                                 f"has an {{example}} field; add {{example}} to question_template or drop "
                                 f"--data.init_args.train_path")
        self.examples = tuple(info.train_texts)

    def generation_params(self) -> dict[str, Any]:
        h = self.hparams
        params = {"backbone": self.backbone_spec.name, "mode": h.mode, **self.sampling.as_dict(h.seed), **self.engine.params(),
                  "use_chat_template": h.use_chat_template, "system_prompt": h.system_prompt}
        if h.mode == "answer":
            params["answer_template"] = self.answer_template
        else:
            params.update(num_questions=h.num_questions, num_examples=len(self.examples),
                          question_template=self.templates["question"])
        if h.mode == "pt_sr":
            params.update(max_rounds=h.max_rounds, critique_temperature=self._critique_temperature,
                          critique_max_new_tokens=self._critique_max_new_tokens,
                          critique_template=self.templates["critique"], refine_template=self.templates["refine"])
        return params

    @property
    def _critique_temperature(self) -> float:
        t = self.hparams.critique_temperature
        return self.sampling.temperature if t is None else t

    @property
    def _critique_max_new_tokens(self) -> int:
        cap = self.hparams.critique_max_new_tokens
        return self.sampling.max_new_tokens if cap is None else cap

    # ----------------------------------------------------------- generation
    def generate(self, prompts: list[str], seeds: list[int], temperature: float,
                 max_new_tokens: int | None = None) -> tuple[list[str], list[bool]]:
        """One continuation per prompt (chat template applied for chat models), and whether each one
        stopped at the length cap (``max_new_tokens``, default the run's) instead of at EOS."""
        h, s = self.hparams, self.sampling
        settings = replace(s, temperature=temperature, max_new_tokens=max_new_tokens or s.max_new_tokens)
        return generate_from_text(self.backbone, self.tokenizer, prompts, seeds, settings=settings,
                                  use_chat_template=h.use_chat_template, system=h.system_prompt,
                                  max_prompt_tokens=h.max_prompt_tokens, engine=self.engine)

    def example(self, example_index: int | None) -> str:
        """The training example a request inserts (``""`` for unseeded templates)."""
        return self.examples[example_index] if example_index is not None and self.examples else ""

    def parse_reply(self, output: str) -> ParsedList:
        """The questions in one PT reply: a list (read as the continuation of the template's "Question 1:"
        when the preset ends with it), or, when one question was asked for, the reply's one question."""
        if self.hparams.num_questions == 1:
            question = parse_question(output)
            return ParsedList((question,), "single", 0) if question else ParsedList((), "none", 0)
        return parse_list(prime_reply(output, self.reply_prefix))

    def question_prompts(self, example_indices: list[int | None]) -> list[str]:
        """The PT prompt of each request: the question template with its training example."""
        n = self.hparams.num_questions
        return [self.templates["question"].format(num_questions=n, example=self.example(e)) for e in example_indices]

    def refine(self, ids: list[int], questions: list[str], examples: list[str],
               hit_cap: list[bool] | None = None) -> tuple[list[str], list[int], list[bool], list[bool]]:
        """PT_SR (Fig. 11) on each question alone: critique → stop, or rewrite from the critique (the paper's
        refine template answers "Stop" instead of a rewrite when the critique is strongly positive), for at
        most ``max_rounds`` rounds.

        Returns the final questions, the rewrite rounds each went through, whether its critique or
        rewrite said "Stop" (``False`` when the round limit ended it), and whether the reply the final text
        came from stopped at the length cap (starting from ``hit_cap`` of the drafts). A rewrite
        without a question keeps the previous version. Seeds depend on the question id, the stage
        and the round.
        """
        h = self.hparams
        texts = list(questions)
        capped = list(hit_cap) if hit_cap is not None else [False] * len(ids)
        rounds = [0] * len(ids)
        stopped = [False] * len(ids)
        active = list(range(len(ids)))
        for round_index in range(1, h.max_rounds + 1):
            if not active:
                break
            critiques, _ = self.generate(
                [self.templates["critique"].format(question=texts[k], example=examples[k]) for k in active],
                [stage_seed(self.hparams.seed, ids[k], "critique", round_index) for k in active],
                self._critique_temperature, self._critique_max_new_tokens)
            going = []
            for k, critique in zip(active, critiques):
                if says_stop(critique):
                    stopped[k] = True
                    self.counts["stopped"] += 1
                else:
                    going.append((k, critique))
            if not going:
                break
            rewrites, rewrite_capped = self.generate(
                [self.templates["refine"].format(question=texts[k], critique=c, example=examples[k]) for k, c in going],
                [stage_seed(self.hparams.seed, ids[k], "refine", round_index) for k, _ in going],
                self._critique_temperature, self._critique_max_new_tokens)
            still = []
            for (k, _), rewrite, cap in zip(going, rewrites, rewrite_capped):
                if says_stop(rewrite):  # Fig. 11: the refine template says 'Stop' when the critique is positive
                    stopped[k] = True
                    self.counts["stopped"] += 1
                    continue
                still.append(k)
                rounds[k] = round_index
                self.counts["refinements"] += 1
                question = parse_question(rewrite)
                if question:
                    texts[k] = question
                    capped[k] = cap
                else:
                    self.counts["malformed_refinements"] += 1
            active = still
        return texts, rounds, stopped, capped

    def questions_from(self, items: list[int], outputs: list[str], example_indices: list[int | None] | None = None,
                       hit_cap: list[bool] | None = None) -> list[dict[str, Any]]:
        """Rows of the parsed questions: request r's j-th question gets id ``r * num_questions + j``.

        Each row records its request, the training example the request inserted, how the reply was
        parsed (``parse``: the list style, items found, items dropped as empty or as headers, and
        items beyond ``num_questions`` dropped), and ``hit_cap``: whether the reply stopped at
        ``max_new_tokens`` (its last question may be cut off).
        """
        n = self.hparams.num_questions
        params = self.generation_params()
        example_indices = example_indices or [None] * len(items)
        hit_cap = hit_cap or [False] * len(items)
        rows = []
        for item, output, example_index, cap in zip(items, outputs, example_indices, hit_cap):
            self.counts["requests"] += 1
            parsed = self.parse_reply(output)
            self.counts[f"style_{parsed.style}"] += 1
            self.counts["dropped_items"] += parsed.dropped
            if not parsed.items:
                self.counts["malformed"] += 1
                continue
            extra = max(0, len(parsed.items) - n)
            self.counts["extra_dropped"] += extra
            questions = parsed.items[:n]
            self.counts["questions"] += len(questions)
            report = {"style": parsed.style, "found": len(parsed.items), "dropped": parsed.dropped, "extra": extra}
            for j, text in enumerate(questions):
                rows.append({"id": item * n + j, "text": text, "request": item, "example_index": example_index,
                             "hit_cap": cap, "method": self.hparams.mode, "parse": report, "params": params})
        return rows

    def refine_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """PT_SR: each row's question through :meth:`refine`; the row keeps its PT ``draft`` and
        records its ``rounds`` and whether the critique ``stopped`` it."""
        examples = [self.example(row["example_index"]) for row in rows]
        texts, rounds, stopped, capped = self.refine([row["id"] for row in rows], [row["text"] for row in rows],
                                                     examples, [row["hit_cap"] for row in rows])
        for row, text, r, stop, cap in zip(rows, texts, rounds, stopped, capped):
            row.update(draft=row["text"], text=text, rounds=r, stopped=stop, hit_cap=cap)
        return rows

    def answers_for(self, items: list[int], questions: list[str], source_ids: list[Any]) -> list[dict[str, Any]]:
        """One answer row per question; empty answers are counted and dropped."""
        prompts = [self.answer_template.format(question=q) if self.answer_template else q for q in questions]
        answers, hit_cap = self.generate(prompts, [stage_seed(self.hparams.seed, i, "answer") for i in items],
                                         self.sampling.temperature)
        params = self.generation_params()
        rows = []
        for item, question, answer, source, cap in zip(items, questions, answers, source_ids, hit_cap):
            self.counts["questions"] += 1
            if not answer.strip():
                self.counts["empty_answers"] += 1
                continue
            self.counts["answers"] += 1
            row = {"id": item, "question": question, "answer": answer, "hit_cap": cap, "method": "answer",
                   "params": params}
            if source is not None:
                row["source_id"] = source
            rows.append(row)
        return rows

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        items = [int(i) for i in (batch["index"].tolist() if isinstance(batch["index"], torch.Tensor) else batch["index"])]
        h = self.hparams
        if h.mode == "answer":
            return self.answers_for(items, list(batch["question"]), list(batch["source_id"]))
        example_indices = list(batch.get("example_index") or [None] * len(items))
        drafts, hit_cap = self.generate(self.question_prompts(example_indices),
                                        [stage_seed(self.hparams.seed, i, "question") for i in items],
                                        self.sampling.temperature)
        rows = self.questions_from(items, drafts, example_indices, hit_cap)
        return rows if h.mode == "pt" else self.refine_rows(rows)

    def on_predict_start(self) -> None:
        self.counts = Counter()

    def on_predict_end(self) -> None:
        c, mode = self.counts, self.hparams.mode
        if mode == "answer":
            log.info("answers: %d questions, %d answered, %d empty answers dropped",
                     c["questions"], c["answers"], c["empty_answers"])
            return
        log.info("%s: %d requests (%d numbered, %d bulleted, %d one per line), %d questions; dropped: %d replies "
                 "without a list, %d empty or header items, %d items beyond num_questions",
                 mode, c["requests"], c["style_numbered"], c["style_bulleted"], c["style_lines"], c["questions"],
                 c["malformed"], c["dropped_items"], c["extra_dropped"])
        if mode == "pt_sr":
            log.info("pt_sr: %d rewrites (%d without a question, previous version kept), %d questions stopped by a "
                     "reply that said Stop", c["refinements"], c["malformed_refinements"], c["stopped"])
        if c["malformed"]:
            log.warning("%d of %d %s replies had no list and were dropped", c["malformed"], c["requests"], mode)
