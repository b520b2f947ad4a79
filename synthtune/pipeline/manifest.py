"""A stage's ``manifest.json``: what it ran with, what it read and wrote (sha256), versions, rows, wall time.

A stage is done when its manifest exists, its key (a hash of its settings and its inputs' fingerprints) is the
key the pipeline computes now (or the key an earlier release gave the same settings), and every output it lists
still has the recorded fingerprint. The manifest is written atomically and last, so a stage killed at any point
has no manifest and runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping, Optional

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_json
from synthtune.pipeline.overrides import keyed_settings

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(file.relative_to(path).as_posix().encode("utf-8") + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _digest(settings: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    payload = json.dumps({"settings": settings, "inputs": dict(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def stage_key(settings: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """sha256 of a stage's settings (:func:`keyed_settings`) and the fingerprints of its inputs: equal keys mean
    equal work."""
    return _digest(keyed_settings(settings), inputs)


def earlier_keys(settings: Mapping[str, Any], inputs: Mapping[str, str]) -> set[str]:
    """The keys earlier releases gave these settings, which hashed the overrides as written: as they are written
    now, and, when they set nothing, as ``[]``, ``{}`` or left out (the forms the shipped pipelines used)."""
    forms = [dict(settings)]
    if not settings.get("overrides"):
        bare = {key: value for key, value in settings.items() if key != "overrides"}
        forms += [bare, {**bare, "overrides": []}, {**bare, "overrides": {}}, {**bare, "overrides": None}]
    return {_digest(form, inputs) for form in forms}


def made_with(manifest: Optional[Mapping[str, Any]], key: str, inputs: Mapping[str, str]) -> bool:
    """Whether ``manifest`` was made with the work ``key`` names: it records ``key``, or it was written by an
    earlier release (its key is the hash of its recorded settings as written, with these inputs) with settings
    that key to ``key`` now."""
    if manifest is None:
        return False
    if manifest.get("key") == key:
        return True
    recorded = manifest.get("settings")
    return (isinstance(recorded, Mapping) and manifest.get("key") == _digest(recorded, inputs)
            and stage_key(recorded, inputs) == key)


class UnreadableManifest(SynthtuneError):
    """A stage's ``manifest.json`` exists but cannot be parsed (cut off, edited, not UTF-8, not an object).

    Args:
        path: the manifest file.
        why: what is wrong with it, in a few words.
    """

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path} cannot be read ({why})")
        self.path, self.why = path, why


def read_manifest(folder: Path) -> Optional[dict[str, Any]]:
    """The manifest in ``folder``, or None when there is none; :class:`UnreadableManifest` when there is one
    that cannot be parsed (never taken for "no manifest": that would clear a finished stage's folder)."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnreadableManifest(path, exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise UnreadableManifest(path, "not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise UnreadableManifest(path, f"not valid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict) or not isinstance(data.get("key"), str):
        raise UnreadableManifest(path, "not a stage manifest: no key")
    return data


def is_current(manifest: Optional[Mapping[str, Any]], key: str, folder: Path, inputs: Mapping[str, str]) -> bool:
    """Whether ``manifest`` was made with ``key`` (:func:`made_with`; ``inputs``: the inputs' fingerprints) and
    each of its outputs is still on disk unchanged."""
    if not made_with(manifest, key, inputs):
        return False
    for output in manifest.get("outputs", {}).values():
        path = folder / output["path"]
        if not path.exists() or fingerprint(path) != output["sha256"]:
            return False
    return True


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest`` into ``folder`` atomically (the last thing a stage does)."""
    return atomic_write_json(folder / MANIFEST, dict(manifest))
