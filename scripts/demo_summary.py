"""The demo's last lines: how many samples, how many ended cleanly, MAUVE against real test questions, the map.

    python scripts/demo_summary.py runs/softsrv-demo/samples.jsonl
reads what `synthtune predict` (samples.jsonl, samples.jsonl.summary.json) and `synthtune score mauve`
(samples.mauve.json, samples.mauve.png) wrote next to each other.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(samples: str) -> None:
    path = Path(samples)
    ends = json.loads(path.with_name(path.name + ".summary.json").read_text())
    mauve = json.loads(path.with_suffix(".mauve.json").read_text())
    print(f"samples:        {ends['samples']} in {path}")
    print(f"ended cleanly:  {ends['ended_at_eos']} of {ends['samples']} stopped at EOS "
          f"({ends['hit_cap']} reached max_new_tokens={ends['max_new_tokens']})")
    print(f"MAUVE vs GSM8K test questions: {mauve['mean']:.3f} ± {mauve['std']:.3f} "
          f"({mauve['featurizer']} features, {len(mauve['per_seed'])} seeds; 1.0 = indistinguishable)")
    print(f"embedding map:  {path.with_suffix('.mauve.png')}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/softsrv-demo/samples.jsonl")
