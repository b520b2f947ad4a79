"""Prompt-template generation with a frozen LLM (SoftSRV paper, Appendix C baselines and step 3).

mode ``pt``:     question template → numbered list → one row per parsed question
mode ``pt_sr``:  as ``pt``, then up to ``max_rounds`` of critique → (stop on "Stop") → refine
mode ``answer``: each input question (bare, or inside ``answer_template``) → one answer row

Nothing is trained: run it with ``synthtune predict``. Every generation goes through
:func:`synthtune.components.text_generation.generate_from_text` (chat template for chat models,
per-sample seeds), and every seed depends only on the run seed, the item and the stage, so outputs do
not depend on the batch size and a resumed run regenerates nothing it already wrote.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Literal

import torch

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.softsrv.template_prompts import (
    check_template,
    format_numbered_list,
    parse_numbered_list,
    preset,
    says_stop,
)
from synthtune.components.sampling import sample_seed
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.text_generation import generate_from_text
from synthtune.contract import DataInfo
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.predict_only import PredictOnlyModule
from synthtune.templates import Template

log = logging.getLogger(__name__)


def stage_seed(base_seed: int, item: int, stage: str, round_index: int = 0) -> int:
    """A seed for one generation call that depends only on the run seed, the item and the stage."""
    return sample_seed(base_seed, item, "template", stage, round_index)


class TemplateGenerationModule(PredictOnlyModule):
    """PT / PT_SR question generation and answer generation from natural-language templates.

    Args:
        backbone: ``smollm2-135m`` (bundled), a local model folder, a ``.gguf`` file or a hub id.
        dtype: weights of the frozen backbone: ``fp32`` or ``bf16``.
        mode: ``pt`` (template → numbered list), ``pt_sr`` (PT plus critique-and-refine) or
            ``answer`` (answer the input questions of the data).
        task: preset (``gsm8k``, ``mbpp``, ``boolq``) that fills every template left ``None``;
            ``None`` requires the templates the mode uses.
        question_template: PT prompt; may use ``{num_questions}``.
        critique_template: PT_SR critique prompt; may use ``{questions}``, ``{num_questions}``.
        refine_template: PT_SR rewrite prompt; may use ``{questions}``, ``{critique}``, ``{num_questions}``.
        answer_template: answer prompt with ``{question}``; ``None`` (or ``""``) passes each question
            bare. The PT baseline's answers use the task's template; SoftSRV's use none.
        use_answer_template: in ``answer`` mode, whether to fill ``answer_template`` from ``task`` when
            it is ``None`` (the PT baseline); ``False`` passes bare questions (SoftSRV step 3).
        num_questions: questions asked for per PT request (the paper asks for 10).
        max_rounds: most critique-and-refine rounds per PT_SR request.
        temperature: sampling temperature of PT questions and of answers (0 = greedy).
        top_p: nucleus sampling mass (1 disables it).
        critique_temperature: temperature of the PT_SR critique and rewrite; ``None`` uses ``temperature``.
        max_new_tokens: longest generation, in tokens.
        max_prompt_tokens: prompts are cut to their last this many tokens.
        use_chat_template: render prompts with the tokenizer's chat template (when it has one).
        system_prompt: optional system turn for chat models.
        seed: seed of every sample's random stream.
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        dtype: Literal["fp32", "bf16"] = "fp32",
        mode: Literal["pt", "pt_sr", "answer"] = "pt",
        task: str | None = "gsm8k",
        question_template: Template | None = None,
        critique_template: Template | None = None,
        refine_template: Template | None = None,
        answer_template: Template | None = None,
        use_answer_template: bool = False,
        num_questions: int = 10,
        max_rounds: int = 3,
        temperature: float = 2.0,
        top_p: float = 1.0,
        critique_temperature: float | None = None,
        max_new_tokens: int = 512,
        max_prompt_tokens: int = 1024,
        use_chat_template: bool = True,
        system_prompt: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if mode not in ("pt", "pt_sr", "answer"):
            raise SynthtuneError(f"mode must be pt, pt_sr or answer, got {mode!r}")
        if num_questions < 1 or max_rounds < 0 or max_prompt_tokens < 1:
            raise SynthtuneError("need num_questions ≥ 1, max_rounds ≥ 0 and max_prompt_tokens ≥ 1")
        if critique_temperature is not None and critique_temperature < 0:
            raise SynthtuneError(f"critique_temperature must be ≥ 0 or null, got {critique_temperature}")
        self.sampling = SamplingSettings(temperature, top_p, max_new_tokens, seed)
        self.save_hyperparameters()
        defaults = preset(task) if task else None

        def pick(given: str | None, kind: str, needed: bool) -> str | None:
            value = given if given is not None else (getattr(defaults, kind) if defaults else None)
            if needed and not value:
                raise SynthtuneError(f"mode {mode} needs {kind}_template; set it in the config or pass task: gsm8k/mbpp/boolq")
            return check_template(value, kind) if value else None

        self.question_template = pick(question_template, "question", mode in ("pt", "pt_sr"))
        self.critique_template = pick(critique_template, "critique", mode == "pt_sr")
        self.refine_template = pick(refine_template, "refine", mode == "pt_sr")
        wants_answer_template = answer_template is not None or use_answer_template
        self.answer_template = pick(answer_template, "answer", False) if wants_answer_template else None
        bb = self.load_frozen_backbone(backbone, dtype)
        if bb.is_encoder_decoder:
            raise SynthtuneError(f"template generation needs a decoder-only LM; {backbone} is an encoder-decoder")
        self.counts: Counter[str] = Counter()

    # ---------------------------------------------------------------- setup
    def checkpoint_signature(self) -> dict[str, Any]:
        return {"method": "template_generation", "backbone": self.hparams.backbone}

    @property
    def ids_per_item(self) -> int:
        return 1 if self.hparams.mode == "answer" else self.hparams.num_questions

    def connect(self, info: DataInfo) -> None:
        """Answer mode reads questions; PT and PT_SR read none."""
        if self.hparams.mode == "answer" and not info.has_questions:
            raise SynthtuneError("answer mode needs questions: pass --data.init_args.path questions.jsonl "
                                 "--data.init_args.field text")
        if self.hparams.mode != "answer" and info.has_questions:
            raise SynthtuneError(f"mode {self.hparams.mode} writes new questions and reads no input; drop "
                                 f"--data.init_args.path or use --model.init_args.mode answer")
        super().connect(info)

    def generation_params(self) -> dict[str, Any]:
        h = self.hparams
        params = {"backbone": h.backbone, "mode": h.mode, **self.sampling.as_dict(),
                  "use_chat_template": h.use_chat_template, "system_prompt": h.system_prompt}
        if h.mode == "answer":
            params["answer_template"] = self.answer_template
        else:
            params.update(num_questions=h.num_questions, question_template=self.question_template)
        if h.mode == "pt_sr":
            params.update(max_rounds=h.max_rounds, critique_temperature=self._critique_temperature,
                          critique_template=self.critique_template, refine_template=self.refine_template)
        return params

    @property
    def _critique_temperature(self) -> float:
        t = self.hparams.critique_temperature
        return self.sampling.temperature if t is None else t

    # ----------------------------------------------------------- generation
    def generate(self, prompts: list[str], seeds: list[int], temperature: float) -> list[str]:
        """One continuation per prompt (chat template applied for chat models)."""
        h, s = self.hparams, self.sampling
        return generate_from_text(self.backbone, self.tokenizer, prompts, seeds, max_new_tokens=s.max_new_tokens,
                                  temperature=temperature, top_p=s.top_p, use_chat_template=h.use_chat_template,
                                  system=h.system_prompt, max_prompt_tokens=h.max_prompt_tokens)

    def refine(self, items: list[int], drafts: list[str]) -> tuple[list[str], list[int], list[bool]]:
        """PT_SR: critique → stop or rewrite, for at most ``max_rounds`` rounds per draft.

        Returns the final drafts, the rewrite rounds each one went through, and whether its critique
        said "Stop" (``False`` when the round limit ended it).
        """
        n, h = self.hparams.num_questions, self.hparams
        drafts = list(drafts)
        rounds = [0] * len(items)
        stopped = [False] * len(items)
        active = list(range(len(items)))
        for round_index in range(1, h.max_rounds + 1):
            if not active:
                break
            shown = [format_numbered_list(parse_numbered_list(drafts[k])) or drafts[k] for k in active]
            critiques = self.generate(
                [self.critique_template.format(questions=s, num_questions=n) for s in shown],
                [stage_seed(self.sampling.seed, items[k], "critique", round_index) for k in active], self._critique_temperature)
            going = []
            for k, shown_list, critique in zip(active, shown, critiques):
                if says_stop(critique):
                    stopped[k] = True
                    self.counts["stopped"] += 1
                else:
                    going.append((k, shown_list, critique))
            if not going:
                break
            rewrites = self.generate(
                [self.refine_template.format(questions=s, critique=c, num_questions=n) for _, s, c in going],
                [stage_seed(self.sampling.seed, items[k], "refine", round_index) for k, _, _ in going], self._critique_temperature)
            for (k, _, _), rewrite in zip(going, rewrites):
                rounds[k] = round_index
                self.counts["refinements"] += 1
                if parse_numbered_list(rewrite):
                    drafts[k] = rewrite
                else:  # a rewrite without a list keeps the previous draft
                    self.counts["malformed_refinements"] += 1
            active = [k for k, _, _ in going]
        return drafts, rounds, stopped

    def questions_from(self, items: list[int], outputs: list[str], rounds: list[int] | None = None,
                       stopped: list[bool] | None = None) -> list[dict[str, Any]]:
        """Rows of the parsed questions: request r's j-th question gets id ``r * num_questions + j``."""
        n = self.hparams.num_questions
        method = self.hparams.mode
        params = self.generation_params()
        rows = []
        for pos, (item, output) in enumerate(zip(items, outputs)):
            self.counts["requests"] += 1
            questions = parse_numbered_list(output)
            if not questions:
                self.counts["malformed"] += 1
                continue
            if len(questions) > n:
                self.counts["extra_dropped"] += len(questions) - n
                questions = questions[:n]
            self.counts["questions"] += len(questions)
            for j, text in enumerate(questions):
                row = {"id": item * n + j, "text": text, "request": item, "method": method, "params": params}
                if rounds is not None and stopped is not None:
                    row.update(rounds=rounds[pos], stopped=stopped[pos])
                rows.append(row)
        return rows

    def answers_for(self, items: list[int], questions: list[str], source_ids: list[Any]) -> list[dict[str, Any]]:
        """One answer row per question; empty answers are counted and dropped."""
        h = self.hparams
        prompts = [self.answer_template.format(question=q) if self.answer_template else q for q in questions]
        answers = self.generate(prompts, [stage_seed(self.sampling.seed, i, "answer") for i in items], self.sampling.temperature)
        params = self.generation_params()
        rows = []
        for item, question, answer, source in zip(items, questions, answers, source_ids):
            self.counts["questions"] += 1
            if not answer.strip():
                self.counts["empty_answers"] += 1
                continue
            self.counts["answers"] += 1
            row = {"id": item, "question": question, "answer": answer, "method": "answer", "params": params}
            if source is not None:
                row["source_id"] = source
            rows.append(row)
        return rows

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        items = [int(i) for i in (batch["index"].tolist() if isinstance(batch["index"], torch.Tensor) else batch["index"])]
        h = self.hparams
        if h.mode == "answer":
            return self.answers_for(items, list(batch["question"]), list(batch["source_id"]))
        prompt = self.question_template.format(num_questions=h.num_questions)
        drafts = self.generate([prompt] * len(items), [stage_seed(self.sampling.seed, i, "question") for i in items],
                               self.sampling.temperature)
        if h.mode == "pt":
            return self.questions_from(items, drafts)
        drafts, rounds, stopped = self.refine(items, drafts)
        return self.questions_from(items, drafts, rounds, stopped)

    def on_predict_start(self) -> None:
        self.counts = Counter()

    def on_predict_end(self) -> None:
        c, mode = self.counts, self.hparams.mode
        if mode == "answer":
            log.info("answers: %d questions, %d answered, %d empty answers dropped",
                     c["questions"], c["answers"], c["empty_answers"])
            return
        log.info("%s: %d requests, %d questions, %d outputs without a numbered list dropped, %d extra items dropped",
                 mode, c["requests"], c["questions"], c["malformed"], c["extra_dropped"])
        if mode == "pt_sr":
            log.info("pt_sr: %d rewrites (%d without a list, previous draft kept), %d stopped by the critique",
                     c["refinements"], c["malformed_refinements"], c["stopped"])
        if c["malformed"]:
            log.warning("%d of %d %s outputs had no numbered list and were dropped",
                        c["malformed"], c["requests"], mode)
