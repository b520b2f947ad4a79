"""GSM8K scoring: the final number of a solution, and exact match on it (greedy pass@1).

A GSM8K reference solution ends with ``#### <number>``. A model's completion is read the same way
when it writes ``####``; otherwise its last number counts. Numbers are compared after removing
thousands separators, currency signs and trailing zeros, so ``1,000``, ``$1000`` and ``1000.00`` match.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUMBER = re.compile(r"-?\$?\s?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_MARKER = "####"


def normalize_number(raw: str) -> str | None:
    """A canonical string for a number (``"1,000.50"`` → ``"1000.5"``, ``"$7"`` → ``"7"``), or ``None``."""
    cleaned = raw.replace(",", "").replace("$", "").replace(" ", "").strip().rstrip(".")
    if not cleaned or cleaned in {"-", "."}:
        return None
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_final_number(text: str) -> str | None:
    """The answer of a solution: the first number after the first ``####``, else the last number
    in the text; ``None`` when there is no number."""
    if _MARKER in text:
        after = text.split(_MARKER, 1)[1]
        match = _NUMBER.search(after)
        if match:
            return normalize_number(match.group())
        return None
    numbers = _NUMBER.findall(text)
    for raw in reversed(numbers):
        value = normalize_number(raw)
        if value is not None:
            return value
    return None


def exact_match(prediction: str, gold: str) -> bool:
    """Whether the final number of ``prediction`` equals ``gold`` (a number or a full reference solution)."""
    predicted = extract_final_number(prediction)
    reference = extract_final_number(gold)
    return predicted is not None and predicted == reference
