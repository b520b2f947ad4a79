"""What every benchmark script shares: the machine description and the RESULTS.md section writer."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def machine_info(**extra: str) -> dict[str, str]:
    """Platform, CPUs, RAM, torch version, accelerator, load average and date, plus ``extra``."""
    import torch

    try:
        ram = f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.1f} GiB"
    except (ValueError, OSError, AttributeError):
        ram = "unknown"
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (OSError, AttributeError):
        load = "unknown"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    info = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": str(os.cpu_count()),
        "ram": ram,
        "gpu": gpu,
        "torch": torch.__version__,
        "torch threads": str(torch.get_num_threads()),
        "load average at start (1/5/15 min)": load,
    }
    info.update(extra)
    return info


def machine_markdown(info: dict[str, str]) -> str:
    return "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()) + "."


def write_section(heading: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace the section that starts with ``heading`` in ``path`` (or append it); keep the rest."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    block = markdown.rstrip("\n") + "\n"
    start = text.find(heading)
    if start >= 0:
        end = text.find("\n## ", start + len(heading))
        rest = text[end + 1:] if end >= 0 else ""
        text = text[:start] + block + ("\n" + rest if rest else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")
