"""Dev-split learning-rate sweep of prompt tuning under the default optimizer (SGD), CPU-sized.

Each learning rate trains a fresh soft prompt on the 16-shot real split (strategy ``real``) for
``--steps`` steps and scores the split's dev set (32 examples) before and after; the default lr of
``PromptTuningModule`` is the one with the best dev accuracy (dev loss breaks ties). Results and the
command are in docs/results/prompt_tuning_lr.md.

    python bench/prompt_tuning_lr.py --task sst2 --lrs 0.3 3 30 --steps 12 --prompt-length 8
"""

from __future__ import annotations

import argparse
import json

import lightning.pytorch as pl
import torch

from synthtune.datamodules.fewshot import FewShotDataModule
from synthtune.lightning_modules.prompt_tuning import PromptTuningModule


def dev_scores(trainer: pl.Trainer, module: PromptTuningModule, dm: FewShotDataModule) -> dict[str, float]:
    out = trainer.validate(module, dm, verbose=False)[0]
    return {"acc": round(float(out["val/acc"]), 4), "f1": round(float(out["val/f1"]), 4),
            "loss": round(float(out["val/loss"]), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adafactor", "adamw"])
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.3, 3.0, 30.0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--prompt-length", type=int, default=8)
    parser.add_argument("--backbone", default="smollm2-135m")
    args = parser.parse_args()
    for lr in args.lrs:
        pl.seed_everything(0, verbose=False)
        module = PromptTuningModule(backbone=args.backbone, prompt_length=args.prompt_length,
                                    optimizer=args.optimizer, lr=lr)
        dm = FewShotDataModule(args.task, backbone=args.backbone, seed=args.seed, batch_size=8)
        quiet = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)
        before = dev_scores(pl.Trainer(**quiet), module, dm)
        pl.Trainer(max_steps=args.steps, limit_val_batches=0, **quiet).fit(module, dm)
        after = dev_scores(pl.Trainer(**quiet), module, dm)
        print(json.dumps({"task": args.task, "optimizer": args.optimizer, "lr": lr, "steps": args.steps,
                          "prompt_length": args.prompt_length, "dev_before": before, "dev_after": after}),
              flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
