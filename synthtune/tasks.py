"""Labelled classification tasks: label names, text fields and validated rows.

A task is a folder with a ``meta.json`` (``label_names``, ``fields``) and JSONL splits, as in the
shipped ``data/<task>/`` folders; ``kshot/16-<seed>/{train,dev}.jsonl`` are the LM-BFF 16-shot
splits. Rows use ``text`` (single-sentence tasks) or ``text_a``/``text_b`` (pair tasks) and a
``label`` that is an index into ``label_names`` (a label name is accepted too). Data of your own names its
columns instead (``text_field``, ``label_field``) and needs no folder: the label names are given, or read from
the data (:func:`label_names_in`).

Each task also has default prompt formats (:data:`TEMPLATES`) for classifying it with a frozen LM
through label words, in two styles:

* ``decoder`` (the default): an instruction, the input and an answer cue, for an instruction-tuned
  decoder, e.g. ``"Movie review: {text}\nQuestion: Is the sentiment of this review positive or
  negative?\nAnswer: The sentiment is"`` → `` negative`` / `` positive``;
* ``lmbff``: the LM-BFF (Gao et al., 2021) manual template and label words, written for masked LMs
  (SST-2: ``"{text} It was"`` → `` terrible`` / `` great``). LM-BFF's pair templates put the mask
  between the two sentences, which a left-to-right decoder cannot fill; for pair tasks this style is
  their suffix form (premise, hypothesis, a short question), the templates synthtune used before.

A template ends where the label word comes (decoder-only LMs); for T5 the module appends
``<extra_id_0>`` to it. Zero-shot accuracy of both styles: docs/results/prompt_tuning_templates.md.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthtune.errors import SynthtuneError
from synthtune.records import read_records, require_fields

log = logging.getLogger(__name__)

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


def data_root() -> Path:
    """``$SYNTHTUNE_DATA``, else ``./data`` when it exists, else the repository's ``data/``."""
    env = os.environ.get("SYNTHTUNE_DATA")
    if env:
        return Path(env)
    local = Path("data")
    return local if local.is_dir() else REPO_DATA


@dataclass(frozen=True)
class TaskSpec:
    """What a labelled task looks like.

    Args:
        name: task name (the data folder's name).
        label_names: label index → name.
        is_pair: rows have ``text_a``/``text_b`` (sentence-pair tasks) instead of ``text``.
        folder: where the task's files are.
        text_field: the column a single-sentence row's text is read from (rows come out as ``text``).
        label_field: the column a row's label is read from (rows come out as ``label``).
    """

    name: str
    label_names: tuple[str, ...]
    is_pair: bool
    folder: Path
    text_field: str = "text"
    label_field: str = "label"

    def column(self, field: str) -> str:
        """The data's column for ``field`` (``text``, ``label``, ``text_a``, ``text_b``)."""
        return {"text": self.text_field, "label": self.label_field}.get(field, field)

    @property
    def text_fields(self) -> tuple[str, ...]:
        return ("text_a", "text_b") if self.is_pair else ("text",)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def kshot_path(self, seed: int, split: str = "train", k: int = 16) -> Path:
        return self.folder / "kshot" / f"{k}-{seed}" / f"{split}.jsonl"

    def eval_path(self) -> Path:
        """The held-out split used as the test set (LM-BFF uses the official dev set as test)."""
        for name in ("test", "validation", "validation_matched"):
            path = self.folder / f"{name}.jsonl"
            if path.is_file():
                return path
        raise SynthtuneError(f"task {self.name!r} has no test or validation split in {self.folder}")

    def read_labeled(self, path: str | Path) -> list[dict[str, Any]]:
        """The rows of ``path``, validated against this task (:func:`read_labeled`)."""
        return read_labeled(path, self)

    def label_index(self, label: Any, source: str, row: int) -> int:
        """``label`` (an index or a label name) as an index, or a one-line error."""
        if isinstance(label, bool):
            label = int(label)
        if isinstance(label, str) and label in self.label_names:
            return self.label_names.index(label)
        try:
            index = int(label)
        except (TypeError, ValueError):
            index = -1
        if isinstance(label, float) and label != int(label):
            index = -1
        if not 0 <= index < self.num_labels:
            raise SynthtuneError(
                f"{source}: row {row} has label {label!r}, outside the label set {list(self.label_names)} "
                f"(indices 0..{self.num_labels - 1}); fix the label or the task's label_names"
            )
        return index


def load_task(name: str | None, label_names: list[str] | None = None, is_pair: bool | None = None, *,
              text_field: str = "text", label_field: str = "label", data: str | Path | None = None,
              strict: bool = False) -> TaskSpec:
    """The task ``name`` (a folder under the data root, or a path to a folder with ``meta.json``);
    ``label_names``/``is_pair`` override or replace what ``meta.json`` says. Without either, the label names are
    read from ``data`` (:func:`label_names_in`), so labelled rows of your own need no folder; ``name`` then
    defaults to the data file's name. ``text_field``/``label_field`` name the data's columns."""
    if name is None and data is None:
        raise SynthtuneError("no task and no data file; name a task folder (task) or the labelled rows to read")
    name = name if name is not None else Path(str(data)).stem
    folder = Path(name) if Path(name).is_dir() else data_root() / name
    meta: dict[str, Any] = {}
    if (folder / "meta.json").is_file():
        meta = json.loads((folder / "meta.json").read_text())
    names = label_names or meta.get("label_names")
    if not names and data is not None:
        names = label_names_in(read_records(data, strict=strict), label_field, str(data))
        log.info("%s: label names read from the data's %r column: %s", data, label_field, ", ".join(names))
    if not names:
        raise SynthtuneError(f"task {name!r}: no label_names (no {folder / 'meta.json'}); pass label_names in the "
                             f"config, or the labelled rows to read them from")
    if is_pair is None:
        fields = " ".join(str(f) for f in meta.get("fields", []))
        is_pair = "text_b" in fields
    if is_pair and text_field != "text":
        raise SynthtuneError(f"text_field {text_field!r}: task {name!r} is a sentence-pair task, whose rows have "
                             f"text_a and text_b; drop text_field")
    return TaskSpec(name=Path(name).name, label_names=tuple(str(n) for n in names), is_pair=bool(is_pair),
                    folder=folder, text_field=text_field, label_field=label_field)


def _natural(value: str) -> tuple[int, Any]:
    """Sort key: numbers by value, then the other names alphabetically."""
    try:
        return 0, float(value)
    except ValueError:
        return 1, value


def label_names_in(rows: list[dict[str, Any]], label_field: str, source: str) -> tuple[str, ...]:
    """The label names of labelled rows, in index order: from the ``label_name`` beside an index label (rows
    synthtune wrote), else the distinct values of ``label_field`` (names sorted, numbers by value); integer labels
    are indices, so they must be 0..n-1."""
    labelled = [r for r in rows if r.get(label_field) is not None]
    if not labelled:
        raise SynthtuneError(f"{source}: no row has a {label_field!r} field to read the label names from; pass "
                             f"label_field (the label column) or label_names")
    values = [r[label_field] for r in labelled]
    integers = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if integers and all(isinstance(r.get("label_name"), str) for r in labelled):
        named: dict[int, str] = {}
        for row in labelled:
            if named.setdefault(row[label_field], row["label_name"]) != row["label_name"]:
                break
        else:
            if sorted(named) == list(range(len(named))):
                return tuple(named[i] for i in range(len(named)))
    if integers:
        distinct = sorted(set(values))
        if distinct != list(range(len(distinct))):
            raise SynthtuneError(f"{source}: the {label_field!r} values are the numbers {distinct[:10]}, which read "
                                 f"as indices 0..{len(distinct) - 1}; pass label_names, or write the labels as names")
        return tuple(str(v) for v in distinct)
    return tuple(sorted({str(v) for v in values}, key=_natural))


def read_labeled(path: str | Path, task: TaskSpec, *, allow_empty: bool = False,
                 strict: bool = False, drop_empty: bool = False) -> list[dict[str, Any]]:
    """Rows of ``path`` as ``{"text"| "text_a","text_b", "label": int}``, validated against ``task``: a
    text field that is ``null`` or a number is one line naming the row and field (not the text "None");
    broken JSON lines are skipped with a warning, or an error when ``strict``. With ``drop_empty`` (generated
    data, where a sample that ends at once is empty), rows with an empty text field are skipped with one
    warning; otherwise a pair task's empty ``text_b`` is an error."""
    source = str(path)
    rows = read_records(path, strict=strict)
    texts = [task.column(f) for f in task.text_fields]
    if drop_empty:
        kept = [r for r in rows if all(not isinstance(r.get(f), str) or r[f].strip() for f in texts)]
        if len(kept) < len(rows):
            log.warning("%s: skipped %d of %d row(s) with an empty %s (samples that ended at once)", source,
                        len(rows) - len(kept), len(rows), " or ".join(texts))
        rows = kept
    for i, row in enumerate(rows if task.is_pair else []):
        text_b = row.get("text_b")
        if text_b is None or (isinstance(text_b, str) and not text_b.strip()):
            raise SynthtuneError(f"{source}: row {i} has no text_b, but {task.name} is a sentence-pair task; "
                                 f"give every row text_a and text_b")
    for i, row in enumerate(rows):
        missing = [c for c in (*texts, task.label_field) if c not in row]
        if missing:
            raise SynthtuneError(f"{source}: row {i} lacks column(s) {', '.join(missing)} (it has "
                                 f"{', '.join(sorted(row)) or 'none'}); name the text and label columns with "
                                 f"text_field and label_field, or fix the data")
    require_fields(rows, texts, source, text=True)
    out = []
    for i, row in enumerate(rows):
        item = {f: row[task.column(f)] for f in task.text_fields}
        item["label"] = task.label_index(row[task.label_field], source, i)
        out.append(item)
    if not out and not allow_empty:
        raise SynthtuneError(f"{source}: no rows; check the file")
    return out


@dataclass(frozen=True)
class PromptFormat:
    """How a row is read as a prompt, and the label word of each label (in label-index order).

    Args:
        template: text with the task's fields (``{text}`` or ``{text_a}``/``{text_b}``); ends where the label word comes.
        label_words: one word per label, each a single token of the bundled tokenizer (leading space included).
    """

    template: str
    label_words: tuple[str, ...]


TEMPLATE_STYLES: tuple[str, ...] = ("decoder", "lmbff")

_NLI3 = {
    "decoder": PromptFormat("Premise: {text_a}\nHypothesis: {text_b}\nDoes the premise entail the hypothesis? "
                            "Yes, maybe, or no?\nAnswer:", (" Yes", " Maybe", " No")),
    "lmbff": PromptFormat("{text_a}\nQuestion: {text_b} Yes, No, or Maybe?\nAnswer:", (" Yes", " Maybe", " No")),
}

#: task name → style → default prompt format (label words in the task's label order).
TEMPLATES: dict[str, dict[str, PromptFormat]] = {
    "sst2": {
        "decoder": PromptFormat("Movie review: {text}\nQuestion: Is the sentiment of this review positive or "
                                "negative?\nAnswer: The sentiment is", (" negative", " positive")),
        "lmbff": PromptFormat("{text} It was", (" terrible", " great")),
    },
    "amazon_reviews": {
        "decoder": PromptFormat("Review: {text}\nIs this review terrible, bad, okay, good or great?\nAnswer:",
                                (" terrible", " bad", " okay", " good", " great")),
        "lmbff": PromptFormat("{text} It was", (" terrible", " bad", " okay", " good", " great")),
    },
    "ag_news": {
        "decoder": PromptFormat("Article: {text}\nIs this article about World, Sports, Business or Technology?"
                                "\nAnswer:", (" World", " Sports", " Business", " Technology")),
        "lmbff": PromptFormat("{text} This news is about", (" World", " Sports", " Business", " Tech")),
    },
    "rte": {
        "decoder": PromptFormat("{text_a}\nQuestion: Does this mean that \"{text_b}\" is true? Yes or no?\nAnswer:",
                                (" Yes", " No")),
        "lmbff": PromptFormat("{text_a}\nQuestion: {text_b} True or False?\nAnswer:", (" True", " False")),
    },
    "qnli": {
        "decoder": PromptFormat("Question: {text_a}\nSentence: {text_b}\nDoes the sentence answer the question? "
                                "Yes or no?\nAnswer:", (" Yes", " No")),
        "lmbff": PromptFormat("Question: {text_a}\nSentence: {text_b}\nDoes the sentence answer the question?",
                              (" Yes", " No")),
    },
    "mrpc": {
        "decoder": PromptFormat("Sentence 1: {text_a}\nSentence 2: {text_b}\nDo the two sentences mean the same "
                                "thing? Yes or no?\nAnswer:", (" No", " Yes")),
        "lmbff": PromptFormat("{text_a}\n{text_b}\nDo the two sentences mean the same?", (" No", " Yes")),
    },
    "qqp": {
        "decoder": PromptFormat("Question 1: {text_a}\nQuestion 2: {text_b}\nDo the two questions ask the same "
                                "thing? Yes or no?\nAnswer:", (" No", " Yes")),
        "lmbff": PromptFormat("Question 1: {text_a}\nQuestion 2: {text_b}\nDo they ask the same thing?",
                              (" No", " Yes")),
    },
    "mnli": _NLI3,
    "snli": _NLI3,
    "sick": _NLI3,
}


def default_prompt_format(task: str, style: str = "decoder") -> PromptFormat:
    """The default template and label words of ``task`` in ``style`` (``decoder`` or ``lmbff``)."""
    if style not in TEMPLATE_STYLES:
        raise SynthtuneError(f"unknown template_style {style!r}; use one of {', '.join(TEMPLATE_STYLES)}")
    formats = TEMPLATES.get(task)
    if formats is None:
        raise SynthtuneError(f"task {task!r} has no default template (known: {', '.join(sorted(TEMPLATES))}); "
                             f"pass --model.init_args.template and --model.init_args.label_words")
    return formats[style]


def check_label_coverage(rows: list[dict[str, Any]], task: TaskSpec, source: str) -> None:
    """One line naming the labels that have no example."""
    seen = {r["label"] for r in rows}
    empty = [task.label_names[i] for i in range(task.num_labels) if i not in seen]
    if empty:
        raise SynthtuneError(f"{source}: label(s) {', '.join(empty)} have zero examples; every label needs at least one")
