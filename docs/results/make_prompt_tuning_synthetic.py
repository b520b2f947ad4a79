"""Label-conditioned synthetic data for the prompt-tuning evidence (docs/results/prompt_tuning.md).

The DawGen generator was not available when the evidence was produced, so this script asks the
bundled SmolLM2-135M-Instruct for examples with plain instruction prompts (no training at all):

* sst2: "Write a short {negative|positive} movie review." -> {"text", "label"}
* rte:  a premise from "Write one factual sentence about {topic}.", then a hypothesis that follows
  from it (label entailment) or that it does not support (label not_entailment)
  -> {"text_a", "text_b", "label"}

Usage (from the repository root):
    python docs/results/make_prompt_tuning_synthetic.py --task sst2 --num 64 --out runs/pt-evidence/syn-sst2.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

from synthtune.components.backbone import load_backbone
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.text_generation import generate_from_text
from synthtune.paths import atomic_write_jsonl

TOPICS = ["a city council", "a football club", "a new medicine", "an oil company", "a volcano", "a film festival",
          "a bank merger", "an election", "a space probe", "a museum", "a railway line", "a famous author"]


def _clean(text: str) -> str:
    return " ".join(text.replace('"', "").split())


def _generate(bb, prompts: list[str], seed0: int, max_new_tokens: int, batch: int = 8) -> list[str]:
    out: list[str] = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start:start + batch]
        seeds = [seed0 + start + i for i in range(len(chunk))]
        settings = SamplingSettings(temperature=0.9, top_p=0.95, max_new_tokens=max_new_tokens)
        out.extend(generate_from_text(bb.model, bb.tokenizer, chunk, seeds, settings)[0])
    return [_clean(t) for t in out]


def make_sst2(bb, num: int, seed: int) -> list[dict]:
    labels = [i % 2 for i in range(num)]
    names = ["negative", "positive"]
    texts = _generate(bb, [f"Write a short {names[y]} movie review in one sentence." for y in labels], seed, 40)
    return [{"text": t, "label": y} for t, y in zip(texts, labels) if t]


def make_rte(bb, num: int, seed: int) -> list[dict]:
    labels = [i % 2 for i in range(num)]
    premises = _generate(bb, [f"Write one factual sentence about {TOPICS[i % len(TOPICS)]}." for i in range(num)],
                         seed, 40)
    asks = [
        f"Write a short sentence that is clearly true if this is true: {p}" if y == 0
        else f"Write a short sentence about the same subject that this text does not say: {p}"
        for p, y in zip(premises, labels)
    ]
    hypotheses = _generate(bb, asks, seed + 10_000, 24)
    return [{"text_a": p, "text_b": h, "label": y} for p, h, y in zip(premises, hypotheses, labels) if p and h]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["sst2", "rte"], required=True)
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    bb = load_backbone(args.backbone)
    rows = (make_sst2 if args.task == "sst2" else make_rte)(bb, args.num, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(args.out, rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
