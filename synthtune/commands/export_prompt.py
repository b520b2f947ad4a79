"""``synthtune export-prompt``: :func:`synthtune.api.export_prompt.export_prompt`, then where it wrote what."""

from __future__ import annotations

from typing import Any

from synthtune.api.export_prompt import export_prompt as export_run_prompt
from synthtune.commands.files import printed


def show(info: dict[str, Any], arguments: dict[str, Any]) -> None:
    print(f"export-prompt: {info['format']} {info['shape']} -> {info['output']}")
    if "why_not_peft" in info:
        print(f"not a PEFT adapter: {info['why_not_peft']}")


export_prompt = printed(export_run_prompt, show)
