"""Prompt-template baselines of the SoftSRV paper (Appendix A.2, Appendix C): PT and PT_SR.

PT fills a task's question template with one training example ("[insert example question]", Fig. 8)
and asks an LLM for a numbered list of ``num_questions`` new questions in its style; the list is
split into separate questions. Requests cycle through the training examples (App. A.2: "cycle
through questions found in the training fold and insert them into the relevant template"). PT_SR
(Fig. 11) then takes each generated question on its own: the LLM critiques it, and rewrites it from
the critique, until a reply says "Stop" or a round limit is reached. Answers for synthetic
questions use the task's answer template (PT baseline) or the bare question.

Three template sets (``TEMPLATE_SETS``; every template can still be replaced in the config):

- ``paper``: the wording of the paper's Appendix C (Figs. 8, 9 and 11), with "[insert example question]",
  "[insert question]" and "[insert critique]" as ``{example}``, ``{question}`` and ``{critique}``, and "10" in
  "generate 10 different questions" as ``{num_questions}``. The text copy of the paper does not show line
  breaks; we break the line before and after the inserted example and before "Question 1:", "Question:",
  "Critique:", "If the critique" and "Answer:". In this set the *rewrite* says "Stop" (Fig. 11's refine
  template), not the critique.
- ``paper_undiversified``: Fig. 10, the one-question GSM8K template of App. A.4 (gsm8k only, one question
  per request), with the paper's critique, refine and answer templates.
- ``synthtune``: our own wording, written after the paper's description before Appendix C was available to
  us (the critique says "Stop"); kept so the earlier results can be reproduced.

Placeholders: question ``{example}``, ``{num_questions}``; critique ``{question}``, ``{example}``;
refine ``{question}``, ``{critique}``, ``{example}``; answer ``{question}``.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from synthtune.errors import SynthtuneError

#: Placeholders each kind of template may use.
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "question": frozenset({"example", "num_questions"}),
    "critique": frozenset({"question", "example"}),
    "refine": frozenset({"question", "critique", "example"}),
    "answer": frozenset({"question"}),
}


@dataclass(frozen=True)
class TemplateSet:
    """The four prompts of one task.

    Args:
        question: shows one training ``{example}`` and asks for ``{num_questions}`` new ones as a
            numbered list (PT).
        critique: asks for a critique of one generated ``{question}``, or the single word Stop (PT_SR).
        refine: asks for that ``{question}`` rewritten from its ``{critique}`` (PT_SR).
        answer: asks for the answer to one synthetic ``{question}`` (PT baseline answers).
        reply_prefix: the list opener the question template ends with ("Question 1:"); a reply that
            does not start with a numbered item is read as its continuation, so its first question is kept.
    """

    question: str
    critique: str
    refine: str
    answer: str
    reply_prefix: str = ""


@dataclass(frozen=True)
class _Task:
    """What the templates of one task say about it."""

    noun: str  # one item, in full, e.g. "grade-school math word problem"
    short: str  # one item, when mentioned again, e.g. "problem"
    plural: str  # what the list holds
    style: str  # what every new item must be like
    output: str  # what to write, and in which form
    checks: str  # what the critique looks at
    form: str = ""  # how one rewritten item is laid out


def _question(t: _Task) -> str:
    return (f"Here is an example of a {t.noun}:\n\n{{example}}\n\nWrite {{num_questions}} new {t.plural} in the "
            f"same style as this example. {t.style} Do not copy the example or repeat yourself. {t.output}")


def _critique(t: _Task) -> str:
    return (f"Here is an example of a {t.noun}:\n\n{{example}}\n\nHere is a new {t.short} written in the same "
            f"style:\n\n{{question}}\n\nCritique the new {t.short}: {t.checks} Say exactly what is wrong and how "
            f"to fix it. If it needs no change, reply with the single word Stop.")


def _refine(t: _Task) -> str:
    return (f"Here is a {t.noun}:\n\n{{question}}\n\nHere is a critique of it:\n\n{{critique}}\n\nRewrite the "
            f"{t.short} so that it fixes every problem the critique names. {t.form}Write only the rewritten "
            f"{t.short}, nothing else.")


def _templates(task: _Task, answer: str) -> TemplateSet:
    return TemplateSet(question=_question(task), critique=_critique(task), refine=_refine(task), answer=answer)


_GSM8K = _Task(
    noun="grade-school math word problem",
    short="problem",
    plural="grade-school math word problems",
    style=("Each problem tells a short everyday story, takes two to eight steps of basic arithmetic (adding, "
           "subtracting, multiplying, dividing) to solve, and has one whole-number answer."),
    output="Write only the problems, not their solutions, as a numbered list (1., 2., 3., ...).",
    checks=("is it clear, self-contained and solvable with basic arithmetic, does it have one whole-number "
            "answer, and is it like the example?"),
)
_MBPP = _Task(
    noun="basic Python programming task",
    short="task",
    plural="basic Python programming tasks",
    style="Each task asks, in one sentence, for one self-contained Python function and says what it must do.",
    output="Write only the task descriptions, no code, as a numbered list (1., 2., 3., ...).",
    checks="is it one clear sentence that asks for one self-contained Python function, and is it like the example?",
)
_BOOLQ = _Task(
    noun="passage from an encyclopedia article followed by a yes/no question about it",
    short="passage and question",
    plural="pairs of a passage and a yes/no question",
    style=("Each passage is a few factual sentences on a different topic; its question is one that people type "
           "into a search engine, and the passage answers it with yes or no."),
    output=("Write them as a numbered list (1., 2., 3., ...); in each item put the passage on one line and its "
            "question on the next line, with no answers."),
    checks=("is the passage factual and coherent, is the question a natural yes/no question that the passage "
            "answers, and is it like the example?"),
    form="Put the passage on one line and the question on the next line. ",
)

PRESETS: dict[str, TemplateSet] = {
    "gsm8k": _templates(_GSM8K, (
        "Solve the following math word problem. Reason step by step, then write the final answer as a "
        "number on its own last line, after '#### '.\n\nProblem: {question}")),
    "mbpp": _templates(_MBPP, (
        "Write a Python function that solves the following task. Reply with the code only.\n\nTask: {question}")),
    "boolq": _templates(_BOOLQ, (
        "Answer the following question about the passage with yes or no, then justify it in one sentence."
        "\n\n{question}")),
}


#: The paper's Fig. 8 question templates (the example, then the request for ``{num_questions}`` questions).
_PAPER_QUESTION = {
    "gsm8k": ("Consider the following grade-school math problem:\n{example}\nNow generate {num_questions} different "
              "questions that require solving a grade-school math problem similar to the example above. Make sure "
              "each question is different and sufficiently rephrased. Please make sure you generate questions, and "
              "not answers. Please make sure each question you generate has a well-defined answer.\nQuestion 1:"),
    "mbpp": ("Consider the following python question:\n{example}\nNow generate {num_questions} different questions "
             "that require writing a Python function similar to the example above. Make sure each question is "
             "different and sufficiently rephrased. Please make sure you generate questions, and not answers. "
             "Please make sure each question you generate has a well-defined answer.\nQuestion 1:"),
    "boolq": ("Consider the following passage and question:\n{example}\nNow generate {num_questions} different "
              "passages and questions similar to the example above. Please make sure each question you generate "
              "has a boolean answer that can be answered by the passage. Make sure each passage and question is "
              "different and sufficiently rephrased. Please make sure you generate passages and questions, and not "
              "answers.\nPassage and Question 1:"),
}
#: Fig. 9 answer templates.
_PAPER_ANSWER = {
    "gsm8k": "Please answer the following question that tests reasoning:\n{question}\nAnswer:",
    "mbpp": ("Please answer the following python question:\n{question}\nPlease generate your answer as a Python "
             "function. The docstring of the function should contain the above question as-is, without any "
             "modification. Please make sure that your function is valid Python code that compiles. Please try "
             "your best to correctly answer the question.\nAnswer:"),
    "boolq": ("Please answer the following question based on the passage. Your answer should be either True or "
              "False. Do not provide any other justification.\n{question}\nAnswer:"),
}
#: What Fig. 11's critique template calls one item of each task.
_PAPER_CRITIQUE_NOUN = {"gsm8k": "grade school math problem", "mbpp": "Python question",
                        "boolq": "passage/question problem"}
#: Fig. 11 refine templates: (the item's name, the instruction after 'Stop').
_PAPER_REFINE = {
    "gsm8k": ("grade-school math problem", "write a new grade-school math problem based on the critique. Write the "
              "question only, do not include the answer."),
    "mbpp": ("Python question", "write a new Python question in a single sentence starting with 'Write a Python "
             "function' based on the critique. Do not ask for docstring or test cases."),
    "boolq": ("passage/question problem", "write a new passage/question problem based on the critique. Write the "
              "passage and question only, do not include the answer."),
}
#: Fig. 10: the undiversified PT of App. A.4 (one question per request, GSM8K only).
_PAPER_UNDIVERSIFIED_QUESTION = (
    "Please generate a question that requires solving a grade-school math problem. Here is an example of such a "
    "question:\n{example}\nNow generate a new question. Please make sure your question is not too similar to the "
    "example above. Please make sure you generate a question, and not an answer. Please make sure the question "
    "you generate has a well-defined answer.")


def _paper(task: str, question: str | None = None) -> TemplateSet:
    noun, instruction = _PAPER_REFINE[task]
    refine = (f"Read the following {noun} and the critique, and write a new {noun} based on the critique:\n"
              f"Question: {{question}}\nCritique: {{critique}}\nIf the critique is strongly positive, say 'Stop'. "
              f"Otherwise, {instruction}")
    critique = ("Please provide actionable feedback on the clarity, difficulty, and originality of the following "
                f"{_PAPER_CRITIQUE_NOUN[task]}: {{question}}")
    template = question if question is not None else _PAPER_QUESTION[task]
    prefix = template.rsplit("\n", 1)[1] if template.endswith("1:") else ""
    return TemplateSet(question=template, critique=critique, refine=refine, answer=_PAPER_ANSWER[task],
                       reply_prefix=prefix)


#: The paper's Appendix C templates (Figs. 8, 9, 11).
PAPER_PRESETS: dict[str, TemplateSet] = {task: _paper(task) for task in ("gsm8k", "mbpp", "boolq")}

#: Each named template set, by task.
TEMPLATE_SETS: dict[str, dict[str, TemplateSet]] = {
    "paper": PAPER_PRESETS,
    "paper_undiversified": {"gsm8k": _paper("gsm8k", _PAPER_UNDIVERSIFIED_QUESTION)},
    "synthtune": PRESETS,
}


def preset(task: str, template_set: str = "paper") -> TemplateSet:
    """The templates of a shipped task (``gsm8k``, ``mbpp``, ``boolq``) in one of ``TEMPLATE_SETS``."""
    if template_set not in TEMPLATE_SETS:
        raise SynthtuneError(f"unknown template_set {template_set!r}; use one of {', '.join(sorted(TEMPLATE_SETS))}")
    tasks = TEMPLATE_SETS[template_set]
    try:
        return tasks[task]
    except KeyError:
        raise SynthtuneError(f"no {template_set} prompt templates for task {task!r}; use one of "
                             f"{', '.join(sorted(tasks))} or give every template in the config") from None


def prime_reply(reply: str, prefix: str) -> str:
    """``reply`` read as the continuation of a template that ends in the list opener ``prefix``
    ("Question 1:"): the opener is put in front unless the reply already starts with a numbered item."""
    if not prefix:
        return reply
    first = next((line for line in reply.splitlines() if line.strip()), "")
    return reply if _NUMBERED.match(first) else f"{prefix} {reply.lstrip()}"


def placeholders(template: str, kind: str) -> frozenset[str]:
    """The placeholders ``template`` uses; a bad format string or a placeholder ``kind`` does not
    have is a one-line error."""
    allowed = PLACEHOLDERS[kind]
    try:
        used = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise SynthtuneError(f"{kind}_template is not a valid format string ({exc}); double literal braces as {{{{ }}}}") from None
    unknown = sorted(used - allowed)
    if unknown:
        raise SynthtuneError(f"{kind}_template uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                             f"it may use {', '.join('{' + a + '}' for a in sorted(allowed))}")
    return frozenset(used)


def check_template(template: str, kind: str) -> str:
    """``template`` if it is a valid format string using only the placeholders of ``kind``."""
    placeholders(template, kind)
    return template


# ------------------------------------------------------------------------------------------ parsing

# A numbered item starts a line: "1.", "1)", "1:", "(1)", "[1]", "#1.", "Question 1:", "Q1.", "**1.**", "- 1.".
# "1.5 litres" does not, since the delimiter must be followed by a space, markdown or the line end.
_NUMBERED = re.compile(
    r"^\s*(?:[-*•]\s+)?(?:\*\*|__)?\s*(?:"
    r"\((?P<a>\d{1,3})\)"
    r"|\[(?P<b>\d{1,3})\]"
    r"|#?(?P<c>\d{1,3})[.):](?=\s|\*|_|$)"
    r"|(?:(?:passage\s+and\s+)?question|problem|task|q)\s*#?\s*(?P<d>\d{1,3})\s*(?:[.):\-–]|(?=\s|\*|$))"
    r")\s*(?:\*\*|__)?\s*",
    re.IGNORECASE,
)
# A bullet item: "- ", "* ", "• ", "+ " (not "**bold**").
_BULLET = re.compile(r"^\s*[-*•+](?:\s+|$)")
_HAS_CONTENT = re.compile(r"[A-Za-z0-9]")
# A line that introduces what follows ("Here are 10 problems:", "**Problems:**"), not an item.
_HEADER = re.compile(r":\s*(?:\*\*|__)?\s*$")
# A label before a single rewritten question ("Rewritten problem:", "**Question:**").
_LABEL = re.compile(r"^\s*(?:\*\*|__)?\s*(?:(?:the|my|a|new|final|revised|rewritten|refined|improved|updated|corrected)\s+){0,3}"
                    r"(?:question|problem|task|version)\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedList:
    """The items found in one LLM reply.

    Args:
        items: the items, in order, cleaned of markers and markdown.
        style: how the reply was split: ``numbered``, ``bulleted``, ``lines`` (one item per line, the
            fallback for replies with at least two lines and no markers) or ``none`` (no items).
        dropped: candidate items that were thrown away (a marker without text, a header line).
    """

    items: tuple[str, ...]
    style: str
    dropped: int


def _clean(text: str) -> str:
    return text.strip().strip("*_").strip()


def _marked_items(lines: list[str], marker: re.Pattern) -> list[str] | None:
    """Items that start at ``marker`` and run to the next marker or blank line; ``None`` without markers.

    Lines before the first marker are ignored, and so is text after a blank line that follows an
    item (a closing remark is not glued to the last item).
    """
    items: list[list[str]] = []
    open_item = False
    for line in lines:
        match = marker.match(line)
        if match:
            items.append([line[match.end():].strip()])
            open_item = True
        elif not line.strip():
            open_item = False
        elif open_item:
            items[-1].append(line.strip())
    if not items:
        return None
    return [_clean("\n".join(p for p in parts if p)) for parts in items]


def parse_list(text: str) -> ParsedList:
    """Split an LLM reply into its items: a numbered list first, else a bulleted list, else one item
    per line (when there are at least two lines; header lines ending in ":" are dropped). A reply
    with a single unmarked line is not a list (it is usually a refusal or a remark)."""
    lines = text.splitlines()
    for style, marker in (("numbered", _NUMBERED), ("bulleted", _BULLET)):
        candidates = _marked_items(lines, marker)
        if candidates is not None:
            items = tuple(c for c in candidates if _HAS_CONTENT.search(c))
            return ParsedList(items, style if items else "none", len(candidates) - len(items))
    candidates = [_clean(line) for line in lines if line.strip()]
    if len(candidates) < 2:
        return ParsedList((), "none", 0)
    items = tuple(c for c in candidates if _HAS_CONTENT.search(c) and not _HEADER.search(c))
    return ParsedList(items, "lines" if items else "none", len(candidates) - len(items))


def parse_question(text: str) -> str:
    """The one question in a PT_SR rewrite: leading header lines ("Here is the rewritten problem:")
    and a label ("Rewritten problem:") are removed; a numbered or bulleted reply gives its first item,
    any other its first paragraph. ``""`` when nothing is left."""
    lines = text.strip().splitlines()
    while lines and (not lines[0].strip() or _HEADER.search(lines[0])):
        lines.pop(0)
    parsed = parse_list("\n".join(lines))
    if parsed.style in ("numbered", "bulleted"):
        return parsed.items[0]
    paragraph = []
    for line in lines:
        if not line.strip():
            break
        paragraph.append(line.strip())
    first = "\n".join(paragraph)
    question = _clean(_LABEL.sub("", first, count=1)).strip("\"'“”")
    return question if _HAS_CONTENT.search(question) else ""


_STRIP = " \t*_`'\".!:;-"


def says_stop(critique: str) -> bool:
    """Whether a PT_SR critique is the verdict "Stop" (the question needs no more changes).

    True when a line of the reply is just "Stop" (any case, markdown or punctuation around it), or
    when the reply's first sentence is "Stop" ("Stop. The problem is fine."); a critique that merely
    uses the word ("the bus makes a stop") does not count.
    """
    lines = [line.strip(_STRIP).lower() for line in critique.splitlines()]
    if any(line == "stop" for line in lines):
        return True
    first = next((line for line in critique.splitlines() if line.strip()), "")
    first_sentence = re.split(r"[.!\n]", first.strip(_STRIP.replace(".", "").replace("!", "")), maxsplit=1)[0]
    return first_sentence.strip(_STRIP).lower() == "stop"
