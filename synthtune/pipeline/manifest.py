"""A stage's ``manifest.json``: what it ran with, what it read and wrote (sha256), versions, rows, wall time.

A stage is done when its manifest exists, its key (a hash of its settings and its inputs' fingerprints) is the
key the pipeline computes now, and every output it lists still has the recorded fingerprint. The manifest is
written atomically and last, so a stage killed at any point has no manifest and runs again.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping, Optional

from synthtune.errors import SynthtuneError
from synthtune.paths import atomic_write_json

MANIFEST = "manifest.json"
#: Packages whose versions every manifest records (not part of the key: upgrading one does not rerun a stage).
VERSIONED = ("synthtune", "torch", "transformers", "lightning", "datasets")
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


def versions() -> dict[str, Optional[str]]:
    """Installed versions of :data:`VERSIONED` (None where one is missing)."""
    found: dict[str, Optional[str]] = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    if found["synthtune"] is None:  # a source checkout without an installed distribution
        import synthtune

        found["synthtune"] = synthtune.__version__
    return found


def stage_key(settings: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """sha256 of a stage's settings and the fingerprints of its inputs: equal keys mean equal work."""
    payload = json.dumps({"settings": settings, "inputs": dict(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


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


def is_current(manifest: Optional[Mapping[str, Any]], key: str, folder: Path) -> bool:
    """Whether ``manifest`` records ``key`` and each of its outputs is still on disk unchanged."""
    if manifest is None or manifest.get("key") != key:
        return False
    for output in manifest.get("outputs", {}).values():
        path = folder / output["path"]
        if not path.exists() or fingerprint(path) != output["sha256"]:
            return False
    return True


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest`` into ``folder`` atomically (the last thing a stage does)."""
    return atomic_write_json(folder / MANIFEST, dict(manifest))
