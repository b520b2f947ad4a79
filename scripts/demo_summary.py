"""The demo's last lines: how many samples, how many ended cleanly, MAUVE against real test questions, the map.

    python scripts/demo_summary.py runs/pipeline-gsm8k-softsrv
reads what `synthtune pipeline --config pipelines/gsm8k_softsrv.yaml` wrote under that root: the predict stage's
samples and their summary (how many ended at EOS), every stage's manifest (rows and seconds), the score stage's
MAUVE report and embedding map, the exported dataset and the report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STAGES = ("fit", "predict", "curate", "decontaminate", "answers", "align", "score", "export", "report")


def main(root: str) -> None:
    base = Path(root)
    manifests = {s: json.loads((base / s / "manifest.json").read_text()) for s in STAGES
                 if (base / s / "manifest.json").is_file()}
    ends = json.loads((base / "predict" / "rows.jsonl.summary.json").read_text())
    mauve = manifests["score"]["report"]
    kept = " -> ".join(f"{s} {manifests[s]['rows']}" for s in ("curate", "decontaminate", "answers", "align")
                       if s in manifests and "rows" in manifests[s])
    total = sum(m.get("seconds", 0) for m in manifests.values())
    print(f"samples:        {ends['samples']} synthetic questions in {base / 'predict' / 'rows.jsonl'}")
    print(f"ended cleanly:  {ends['ended_at_eos']} of {ends['samples']} stopped at EOS "
          f"({ends['hit_cap']} reached max_new_tokens={ends['max_new_tokens']}"
          + (f", {ends['repetition_loops']} of them in a repetition loop" if ends.get("repetition_loops") else "")
          + f"); kept: {kept}")
    print(f"MAUVE vs GSM8K test questions: {mauve['mean']:.3f} ± {mauve['std']:.3f} over {len(mauve['per_seed'])} "
          f"seeds ({mauve['num_synthetic']} final questions, {mauve['clusters']} buckets, {mauve['featurizer']} "
          "features; 1.0 = indistinguishable, a rough indicator at this size)")
    print(f"embedding map:  {base / 'score' / 'embedding_map.png'}; dataset: {base / 'export' / 'dataset'}; "
          f"report: {base / 'report' / 'report.md'} (stages took {total / 60:.1f} min)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/pipeline-gsm8k-softsrv")
