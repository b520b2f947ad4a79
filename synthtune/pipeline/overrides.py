"""A Lightning stage's ``overrides``: a mapping of dotted keys (``{trainer.max_steps: 3}``), as the task configs
write them, or, deprecated, a list of command-line words (``[--trainer.max_steps, "3"]``).

Both forms mean the same run, so both have one normalized form (:func:`normalized_overrides`), the one a stage's
key hashes: changing ``[]`` to ``{}``, or the words to the mapping they convert to, reruns nothing.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import yaml

from synthtune.errors import SynthtuneError

log = logging.getLogger("synthtune")


def stage_overrides(section: Mapping[str, Any], stage: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The section's ``overrides`` as (mapping, words) for a :class:`~synthtune.lightning_cli.Request`; the list
    of words still works, with a deprecation warning that shows the mapping to write instead."""
    given = section.get("overrides") or {}
    if isinstance(given, Mapping):
        return dict(given), ()
    if not isinstance(given, (list, tuple)):
        raise SynthtuneError(f"{stage}.overrides takes a mapping of dotted keys (trainer.max_steps: 3), got "
                             f"{type(given).__name__}")
    words = tuple(str(word) for word in given)
    if not words:
        return {}, ()
    as_keys = words_as_keys(words)
    shown = ", ".join(f"{key}: {value}" for key, value in as_keys.items()) if as_keys else "trainer.max_steps: 3"
    log.warning("pipeline: %s.overrides as a list of command-line words is deprecated and goes in a later release; "
                "write a mapping of dotted keys instead: overrides: {%s}", stage, shown)
    return {}, words


def words_as_keys(words: tuple[str, ...] | list[str]) -> Optional[dict[str, Any]]:
    """``--key value`` and ``--key=value`` words as ``{key: value}``, each value read as YAML as the command line
    reads it (``"3"`` -> 3); None when the words are not such pairs."""
    found: dict[str, Any] = {}
    rest = [str(word) for word in words]
    while rest:
        word = rest.pop(0)
        if not word.startswith("--") or len(word) < 3:
            return None
        if "=" in word:
            key, value = word[2:].split("=", 1)
        elif rest and not rest[0].startswith("--"):
            key, value = word[2:], rest.pop(0)
        else:
            return None
        try:
            found[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            found[key] = value
    return found


def normalized_overrides(given: Any) -> Any:
    """``given`` overrides in one form: a mapping ({} for ``[]``, ``{}`` or none); words that are ``--key value``
    pairs as the mapping they convert to; other words as they are."""
    if not given:
        return {}
    if isinstance(given, Mapping):
        return dict(given)
    if isinstance(given, (list, tuple)):
        as_keys = words_as_keys(given)
        return as_keys if as_keys is not None else [str(word) for word in given]
    return given


def keyed_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's settings as its key hashes them: the ``overrides`` of the stage, and of every section a
    card or report records (``pipeline``), normalized (left out when they set nothing)."""
    found = dict(settings)
    if "overrides" in found:
        found["overrides"] = normalized_overrides(found["overrides"])
        if not found["overrides"]:
            del found["overrides"]
    if isinstance(found.get("pipeline"), Mapping):
        found["pipeline"] = {name: keyed_settings(section) if isinstance(section, Mapping) else section
                             for name, section in found["pipeline"].items()}
    return found
