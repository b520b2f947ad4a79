"""The demo's last lines: how many samples, how many ended cleanly, how many answers were cut at the cap and
dropped, where the outputs are, and MAUVE against real test questions for the raw samples and the final questions,
each beside the score of as many real training questions (the ceiling at that size).

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


def mauve_line(label: str, report: dict) -> str:
    """``label: score ± seeds | real at this size: ceiling ± seeds (± over draws) | buckets``."""
    line = f"  {label:<24} {report['mean']:.3f} ± {report['std']:.3f}"
    top = report.get("ceiling")
    if top:
        line += (f"   vs {top['size']} real GSM8K train questions: {top['mean']:.3f} ± {top['std']:.3f} "
                 f"(draws spread ±{top['std_draws']:.3f} over {top['draws']})")
    return line + f"   [{report['clusters']} buckets]"


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
    answers = manifests.get("answers", {}).get("report", {})
    if "hit_cap" in answers:
        fate = "dropped" if answers["dropped_at_cap"] else "kept, flagged hit_cap"
        print(f"answers:        {answers['kept']} of {answers['answers']} exported; {answers['hit_cap']} stopped at "
              f"the cap max_new_tokens={answers['max_new_tokens']} without EOS ({fate})")
    print(f"outputs:        map {base / 'score' / 'embedding_map.png'}; dataset {base / 'export' / 'dataset'}; "
          f"report {base / 'report' / 'report.md'} (stages took {total / 60:.1f} min)")
    print(f"MAUVE vs GSM8K test questions ({mauve['num_reference']} of them, {mauve['featurizer']} features, "
          f"{len(mauve['per_seed'])} k-means seeds; 1.0 = indistinguishable):")
    if mauve.get("raw"):
        print(mauve_line(f"all {mauve['raw']['num_synthetic']} raw samples", mauve["raw"]))
    print(mauve_line(f"{mauve['num_synthetic']} final questions", mauve))
    note = (f"± is the spread over {len(mauve['per_seed'])} k-means seeds only; the sampling noise (which rows are "
            "drawn) is larger at this size")
    if mauve.get("ceiling"):
        top = mauve["ceiling"]
        note += (f": {top['size']} real questions move ±{top['std_draws']:.3f} over {top['draws']} draws, synthetic "
                 "ones further from the reference move more; read each score against the real one beside it")
    print(f"  {note}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/pipeline-gsm8k-softsrv")
