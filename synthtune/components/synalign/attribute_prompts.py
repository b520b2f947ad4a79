"""Two-stage latent attribute prompting (SynAlign, Sec. 3.2): prompts and robust reply parsing.

Both stages see all demonstrations of a selected cluster (:func:`format_demonstrations`). Stage 1
asks the LLM for the attributes of the demonstrations as one JSON object: in ``found`` mode (the
default) the model names the attributes that matter for them itself; in ``fixed`` mode it fills the
keys :data:`FIXED_KEYS` (topic, style, tone, length). Stage 2 asks for ``gen_size`` new examples with
the cluster's label and those attributes. Small models answer loosely, so both parsers are forgiving
about the wrapping (code fences, chatter before or after, ``name: value`` lines or a list of
attribute phrases instead of JSON, numbering styles) and strict about the content: a stage-1 reply without attributes, or a stage-2
reply with the wrong number of items, is counted in :class:`ParseStats` and dropped instead of raising.

Templates are ``str.format`` strings whose fields come from :data:`TEMPLATE_FIELDS`; they are set in
the config (``model.init_args.attribute_template`` / ``generation_template``).
"""

from __future__ import annotations

import json
import re
import string
from dataclasses import asdict, dataclass
from typing import Any, Literal

from synthtune.errors import SynthtuneError

CountPolicy = Literal["drop", "truncate"]
AttributeMode = Literal["found", "fixed"]

#: Fields a template may use (``{text}`` holds all demonstrations of the cluster).
TEMPLATE_FIELDS = ("text", "label_name", "task", "attributes", "gen_size")

#: The attribute keys of ``fixed`` mode.
FIXED_KEYS = ("topic", "style", "tone", "length")

#: At most this many attributes are kept from a ``found`` reply (small models can ramble on).
MAX_FOUND_ATTRIBUTES = 8

FOUND_ATTRIBUTE_TEMPLATE = (
    "Here are {task}s labelled \"{label_name}\":\n\n{text}\n\n"
    "Which attributes matter most for writing {task}s like these (for example their topic, style, tone, "
    "length, audience, or anything else they share)? Name up to five and give each its value for these "
    "{task}s, as one JSON object that maps each attribute's name to its value. Reply with the JSON object only."
)

FIXED_ATTRIBUTE_TEMPLATE = (
    "Here are {task}s labelled \"{label_name}\":\n\n{text}\n\n"
    "Describe their attributes as one JSON object with the keys \"topic\", \"style\", \"tone\" and \"length\". "
    "Reply with the JSON object only."
)

#: Stage-1 template of each attribute mode.
ATTRIBUTE_TEMPLATES: dict[str, str] = {"found": FOUND_ATTRIBUTE_TEMPLATE, "fixed": FIXED_ATTRIBUTE_TEMPLATE}
DEFAULT_ATTRIBUTE_TEMPLATE = FOUND_ATTRIBUTE_TEMPLATE

DEFAULT_GENERATION_TEMPLATE = (
    "Write {gen_size} new {task}s labelled \"{label_name}\" with these attributes: {attributes}.\n"
    "For reference, here are such {task}s:\n{text}\n\n"
    "Write a numbered list from 1 to {gen_size}, one {task} per line, and nothing else."
)

_FENCE = re.compile(r"```(?:json|JSON)?")
# "1. text", "1) text", "1: text", "(1) text", "- text", "* text", "• text"
_ITEM = re.compile(r"^\s*(?:\(?\d{1,3}[.):\]]|[-*•])\s*(.*)$")
# "Topic: film", "- **Tone**: warm", "2. audience = teenagers" (a name of at most four words)
_KEY_VALUE = re.compile(r"^\s*(?:\(?\d{1,3}[.):\]]|[-*•])?\s*[*_`\"']*([A-Za-z][A-Za-z _/-]{0,40}?)[*_`\"']*\s*[:=]\s*(.+?)\s*$")
_PAIR_SPLIT = re.compile(r"[;,]\s*(?=[A-Za-z][A-Za-z _/-]{0,40}:)")
_LABEL_PREFIX = re.compile(r"^(?:example|sample|text|review|sentence|article)\s*\d*\s*[:.-]\s*", re.IGNORECASE)


@dataclass
class ParseStats:
    """Counts of what the parsers saw, for the run's summary line and report.

    Attributes:
        attribute_replies: stage-1 replies parsed.
        unparsed_attributes: stage-1 replies without usable attributes (their jobs are skipped).
        repaired_json: stage-1 replies whose JSON object was cut off and closed by the parser.
        line_attributes: stage-1 replies without JSON whose attributes were read from ``name: value`` lines
            or (``found`` mode) from a list of short attribute phrases.
        generation_replies: stage-2 replies parsed.
        wrong_count: stage-2 replies whose number of items differed from ``gen_size``.
        dropped_replies: stage-2 replies dropped (wrong count under ``drop``, or no items at all).
        items_kept: generated examples kept.
    """

    attribute_replies: int = 0
    unparsed_attributes: int = 0
    repaired_json: int = 0
    line_attributes: int = 0
    generation_replies: int = 0
    wrong_count: int = 0
    dropped_replies: int = 0
    items_kept: int = 0

    def add(self, other: ParseStats) -> None:
        """Add ``other``'s counts to these."""
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def check_template(template: str, name: str, required: tuple[str, ...]) -> None:
    """Raise one line if ``template`` is not a format string over :data:`TEMPLATE_FIELDS` with ``required``.

    Args:
        template: the ``str.format`` template.
        name: its config name, for the message.
        required: fields it must use.
    """
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise SynthtuneError(f"{name} is not a valid format string ({exc}); escape literal braces as {{{{ and }}}}") from None
    unknown = sorted(f for f in fields if f not in TEMPLATE_FIELDS)
    if unknown:
        raise SynthtuneError(f"{name} uses unknown field(s) {unknown}; use only {{{'}, {'.join(TEMPLATE_FIELDS)}}}")
    missing = [f for f in required if f not in fields]
    if missing:
        raise SynthtuneError(f"{name} must contain {', '.join('{' + f + '}' for f in missing)}")


def fill(template: str, **values: Any) -> str:
    """``template`` with the given fields filled (fields it does not use are ignored)."""
    return template.format(**{k: values.get(k, "") for k in TEMPLATE_FIELDS})


def _first_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict) and value:
            return value
    return None


def _repair_truncated(text: str) -> dict[str, Any] | None:
    """Close a JSON object that was cut off (e.g. by max_new_tokens) after its last complete member."""
    start = text.find("{")
    if start < 0:
        return None
    body = text[start:]
    cuts = [m.start() for m in re.finditer(r",", body)][::-1] + [len(body)]
    for cut in cuts:
        head = body[:cut].rstrip()
        for tail in ("}", "\"}", "]}", "\"]}"):
            try:
                value = json.loads(head + tail)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and value:
                return value
    return None


def parse_attributes(reply: str) -> tuple[dict[str, str] | None, bool]:
    """The attribute object of a stage-1 reply, and whether it had to be repaired.

    Accepts chatter and code fences around the object; an object cut off mid-way is closed after its
    last complete member. Values are flattened to strings; empty keys/values are dropped.

    Returns:
        ``(attributes, repaired)``; ``attributes`` is ``None`` when the reply holds no usable JSON object.
    """
    text = _FENCE.sub("", reply or "")
    value, repaired = _first_object(text), False
    if value is None:
        value, repaired = _repair_truncated(text), True
    if not value:
        return None, False
    out: dict[str, str] = {}
    for key, item in value.items():
        if isinstance(item, (dict, list)):
            item = json.dumps(item, ensure_ascii=False)
        item = "" if item is None else str(item).strip()
        if str(key).strip() and item:
            out[str(key).strip()] = item
    return (out or None), (repaired and bool(out))


def parse_attribute_lines(reply: str) -> dict[str, str] | None:
    """Attributes written as ``name: value`` lines (or ``a: x; b: y`` on one line) instead of JSON.

    Names are lower-cased, stripped of markdown, and at most four words long; lines that are not
    ``name: value`` are ignored. Returns ``None`` when no line is.
    """
    out: dict[str, str] = {}
    for line in _FENCE.sub("", reply or "").splitlines():
        for part in _PAIR_SPLIT.split(line):
            match = _KEY_VALUE.match(part)
            if not match:
                continue
            key, value = " ".join(match.group(1).split()).lower(), match.group(2).strip().strip("*_`\"'").strip()
            if key and value and len(key.split()) <= 4 and key not in out:
                out[key] = value
    return out or None


def parse_attribute_list(reply: str, max_words: int = 12) -> dict[str, str] | None:
    """A numbered or bulleted list of short attribute phrases (``1. **emotionally complex**``) as
    ``{"trait 1": "emotionally complex", ...}``; ``None`` unless the reply has at least two such items and
    every item has at most ``max_words`` words (long items are examples, not attributes)."""
    items = []
    for line in _FENCE.sub("", reply or "").splitlines():
        match = _ITEM.match(line)
        if match:
            items.append(" ".join(match.group(1).replace("**", "").replace("__", "").split()).strip(" .;,"))
    items = [item for item in items if item]
    if len(items) < 2 or any(len(item.split()) > max_words for item in items):
        return None
    return {f"trait {i}": item for i, item in enumerate(items, 1)}


def read_attributes(reply: str, mode: AttributeMode = "found") -> tuple[dict[str, str] | None, str | None]:
    """The attributes of a stage-1 reply and how they were read (``json``, ``repaired``, ``lines`` or ``list``).

    A JSON object is preferred; a reply without one is read as ``name: value`` lines, and in ``found``
    mode, failing those, as a list of short attribute phrases (:func:`parse_attribute_list`). In ``found``
    mode every name the model gave is kept (the first :data:`MAX_FOUND_ATTRIBUTES`); in ``fixed`` mode
    only :data:`FIXED_KEYS` (case-insensitive), in that order. ``(None, None)`` when nothing usable is left.
    """
    if mode not in ATTRIBUTE_TEMPLATES:
        raise SynthtuneError(f"unknown attribute mode {mode!r}; use 'found' or 'fixed'")
    attributes, repaired = parse_attributes(reply)
    how = "repaired" if repaired else "json"
    if attributes is None:
        attributes, how = parse_attribute_lines(reply), "lines"
    if attributes is None and mode == "found":
        attributes, how = parse_attribute_list(reply), "list"
    if attributes is None:
        return None, None
    if mode == "fixed":
        lowered = {k.lower(): v for k, v in attributes.items()}
        attributes = {k: lowered[k] for k in FIXED_KEYS if k in lowered}
    else:
        attributes = dict(list(attributes.items())[:MAX_FOUND_ATTRIBUTES])
    return (attributes, how) if attributes else (None, None)


def format_demonstrations(texts: list[str]) -> str:
    """A cluster's demonstrations for the ``{text}`` field: the text itself when there is one, else a
    numbered list, one demonstration per line."""
    if len(texts) == 1:
        return texts[0]
    return "\n".join(f"{i}. {' '.join(t.split())}" for i, t in enumerate(texts, 1))


def format_attributes(attributes: dict[str, str]) -> str:
    """``{"topic": "film", "tone": "warm"}`` → ``topic: film; tone: warm`` (for the stage-2 prompt)."""
    return "; ".join(f"{k}: {v}" for k, v in attributes.items())


def _clean_item(text: str) -> str:
    text = _LABEL_PREFIX.sub("", text.strip()).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


def split_items(reply: str) -> list[str]:
    """The examples in a stage-2 reply.

    A JSON list of strings is taken as is. Otherwise list markers (``1.``, ``2)``, ``-``, ...) start a
    new item and unmarked lines continue the current one; a reply with no marker at all is one item.
    """
    text = _FENCE.sub("", reply or "").strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [c for c in (_clean_item(v) for v in value) if c]
    items: list[list[str]] = []
    preamble: list[str] = []
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            items.append([match.group(1)])
        elif items:
            if line.strip():
                items[-1].append(line.strip())
        elif line.strip():
            preamble.append(line.strip())
    if not items:
        items = [preamble]  # no list markers: the whole reply is one example
    return [c for c in (_clean_item(" ".join(parts)) for parts in items) if c]


def parse_items(reply: str, gen_size: int, policy: CountPolicy = "drop") -> tuple[list[str], bool]:
    """The kept examples of a stage-2 reply and whether its item count was wrong.

    Args:
        reply: the model's stage-2 reply.
        gen_size: how many examples the prompt asked for.
        policy: ``"drop"`` keeps nothing from a reply with the wrong count; ``"truncate"`` keeps
            its first ``gen_size`` items.

    Returns:
        ``(items, wrong_count)``.
    """
    if gen_size < 1:
        raise SynthtuneError(f"gen_size must be >= 1, got {gen_size}")
    if policy not in ("drop", "truncate"):
        raise SynthtuneError(f"unknown count policy {policy!r}; use 'drop' or 'truncate'")
    items = split_items(reply)
    wrong = len(items) != gen_size
    if wrong and policy == "drop":
        return [], True
    return items[:gen_size], wrong
