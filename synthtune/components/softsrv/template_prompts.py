"""Prompt-template baselines of the SoftSRV paper (Appendix C): PT and PT_SR.

PT asks an LLM, in natural language, for a numbered list of ``num_questions`` new questions in the
style of a task; the list is split into separate questions. PT_SR then asks the same LLM to critique
the list and to rewrite it from the critique, for a few rounds, until the critique says "Stop".
Answers for synthetic questions use the task's answer template (PT baseline) or the bare question.

The wording below is ours, written to follow the paper's description; configs copy it so users can
change every template. Placeholders: question ``{num_questions}``; critique ``{questions}``,
``{num_questions}``; refine ``{questions}``, ``{critique}``, ``{num_questions}``; answer ``{question}``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from synthtune.errors import SynthtuneError

#: Placeholders each kind of template may use.
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "question": frozenset({"num_questions"}),
    "critique": frozenset({"questions", "num_questions"}),
    "refine": frozenset({"questions", "critique", "num_questions"}),
    "answer": frozenset({"question"}),
}


@dataclass(frozen=True)
class TemplateSet:
    """The four prompts of one task.

    Args:
        question: asks for ``{num_questions}`` new questions as a numbered list (PT).
        critique: asks for a critique of a numbered list ``{questions}``, or the single word Stop (PT_SR).
        refine: asks for a rewritten list from ``{questions}`` and ``{critique}`` (PT_SR).
        answer: asks for the answer to one synthetic ``{question}`` (PT baseline answers).
    """

    question: str
    critique: str
    refine: str
    answer: str


def _critique(kind: str, style: str) -> str:
    return (
        f"Here is a numbered list of {kind} meant to resemble {style}:\n\n{{questions}}\n\n"
        f"Critique the list. Point out every item that is unclear, unanswerable, repeated, off-topic or "
        f"unlike {style}, and say how to fix it. If every item is already good, reply with the single word Stop."
    )


def _refine(kind: str) -> str:
    return (
        f"Here is a numbered list of {kind}:\n\n{{questions}}\n\nHere is a critique of the list:\n\n{{critique}}\n\n"
        f"Rewrite the list so that it fixes every problem the critique names. Write exactly {{num_questions}} "
        f"{kind} as a numbered list (1., 2., 3., ...) and nothing else."
    )


PRESETS: dict[str, TemplateSet] = {
    "gsm8k": TemplateSet(
        question=(
            "You write grade-school math word problems like those of the GSM8K benchmark. Each problem tells "
            "a short everyday story, takes two to eight steps of basic arithmetic (adding, subtracting, "
            "multiplying, dividing) to solve, and has one whole-number answer. Please generate "
            "{num_questions} different problems of this kind. Write only the problems, not their solutions, "
            "as a numbered list (1., 2., 3., ...)."
        ),
        critique=_critique("math word problems", "GSM8K grade-school math problems"),
        refine=_refine("math word problems"),
        answer=(
            "Solve the following math word problem. Reason step by step, then write the final answer as a "
            "number on its own last line, after '#### '.\n\nProblem: {question}"
        ),
    ),
    "mbpp": TemplateSet(
        question=(
            "You write short Python programming tasks like those of the MBPP benchmark. Each task asks for "
            "one self-contained Python function and says in one sentence what the function must do, for "
            "example \"Write a function to find the second largest number in a list.\" Please generate "
            "{num_questions} different tasks of this kind. Write only the task descriptions, no code, as a "
            "numbered list (1., 2., 3., ...)."
        ),
        critique=_critique("Python programming tasks", "MBPP programming tasks"),
        refine=_refine("Python programming tasks"),
        answer=(
            "Write a Python function that solves the following task. Reply with the code only.\n\n"
            "Task: {question}"
        ),
    ),
    "boolq": TemplateSet(
        question=(
            "You write yes/no questions like those of the BoolQ benchmark: natural questions that people "
            "type into a search engine, about facts found in encyclopedia articles, whose answer is either "
            "yes or no. Please generate {num_questions} different questions of this kind. Write only the "
            "questions, without answers, as a numbered list (1., 2., 3., ...)."
        ),
        critique=_critique("yes/no questions", "BoolQ search-engine questions"),
        refine=_refine("yes/no questions"),
        answer="Answer the following question with yes or no, then justify it in one sentence.\n\nQuestion: {question}",
    ),
}


def preset(task: str) -> TemplateSet:
    """The templates of a shipped task (``gsm8k``, ``mbpp``, ``boolq``)."""
    try:
        return PRESETS[task]
    except KeyError:
        raise SynthtuneError(f"no prompt templates for task {task!r}; use one of {', '.join(sorted(PRESETS))} "
                             f"or give every template in the config") from None


def check_template(template: str, kind: str) -> str:
    """``template`` if it is a valid format string using only the placeholders of ``kind``."""
    allowed = PLACEHOLDERS[kind]
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise SynthtuneError(f"{kind}_template is not a valid format string ({exc}); double literal braces as {{{{ }}}}") from None
    unknown = sorted(used - allowed)
    if unknown:
        raise SynthtuneError(f"{kind}_template uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                             f"it may use {', '.join('{' + a + '}' for a in sorted(allowed))}")
    return template


# A list item starts a line: "1.", "1)", "1:", "(1)", "[1]", "#1.", "Question 1:", "Q1.", "**1.**", "- 1.".
# "1.5 litres" does not, since the delimiter must be followed by a space, markdown or the line end.
_ITEM = re.compile(
    r"^\s*(?:[-*•]\s+)?(?:\*\*|__)?\s*(?:"
    r"\((?P<a>\d{1,3})\)"
    r"|\[(?P<b>\d{1,3})\]"
    r"|#?(?P<c>\d{1,3})[.):](?=\s|\*|_|$)"
    r"|(?:question|problem|task|q)\s*#?\s*(?P<d>\d{1,3})\s*(?:[.):\-–]|(?=\s|\*|$))"
    r")\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
_HAS_CONTENT = re.compile(r"[A-Za-z0-9]")


def parse_numbered_list(text: str) -> list[str]:
    """Split a numbered list into its items, in order.

    An item runs from its marker to the next marker or the next blank line (so a closing remark
    after the list is not glued to the last item); lines before the first marker are ignored.
    Items without a letter or digit are dropped. A text without any numbered item gives ``[]``.
    """
    items: list[list[str]] = []
    open_item = False
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            items.append([line[match.end():].strip()])
            open_item = True
        elif not line.strip():
            open_item = False
        elif open_item:
            items[-1].append(line.strip())
    cleaned = []
    for parts in items:
        item = "\n".join(p for p in parts if p).strip().strip("*_").strip()
        if _HAS_CONTENT.search(item):
            cleaned.append(item)
    return cleaned


def format_numbered_list(items: list[str]) -> str:
    """``items`` as ``1. ...`` lines: how a parsed draft is shown to the critique."""
    return "\n".join(f"{i}. {item}" for i, item in enumerate(items, start=1))


_STRIP = " \t*_`'\".!:;-"


def says_stop(critique: str) -> bool:
    """Whether a PT_SR critique is the verdict "Stop" (the list needs no more changes).

    True when a line of the reply is just "Stop" (any case, markdown or punctuation around it), or
    when the reply's first sentence is "Stop" ("Stop. The list is fine."); a critique that merely
    uses the word ("the bus makes a stop") does not count.
    """
    lines = [line.strip(_STRIP).lower() for line in critique.splitlines()]
    if any(line == "stop" for line in lines):
        return True
    first = next((line for line in critique.splitlines() if line.strip()), "")
    first_sentence = re.split(r"[.!\n]", first.strip(_STRIP.replace(".", "").replace("!", "")), maxsplit=1)[0]
    return first_sentence.strip(_STRIP).lower() == "stop"
