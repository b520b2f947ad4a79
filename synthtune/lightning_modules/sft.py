"""Downstream check (SoftSRV paper, step 4, small scale): fine-tune a causal LM on (question, answer)
pairs, then score GSM8K exact match on the final number, greedy, pass@1.

fit:  next-token loss on the answer tokens only (labels -100 on the prompt), full fine-tuning or LoRA
test: greedy completion of each test prompt → final number → exact match with the gold number

Unlike the generation methods, the model here is trained, so it is a private copy loaded from disk (the
shared frozen backbone of ``load_backbone`` is never modified). With ``finetune: full`` every weight is
trained and a checkpoint holds the whole model; with ``finetune: lora`` only the injected LoRA
adapters are trained, and a checkpoint holds only them (the base weights are rebuilt from
``backbone``, and the signature check refuses a checkpoint made from another one).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch

from synthtune.components.backbone import (
    DEFAULT_BACKBONE,
    load_tokenizer,
    parse_dtype,
    resolve_backbone,
)
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.gsm8k_eval import extract_final_number
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.text_generation import generate_from_text
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.base import SynthtuneModule
from synthtune.lightning_modules.flat_options import FlatBackboneOptions
from synthtune.paths import atomic_write_jsonl
from synthtune.registry import method

log = logging.getLogger(__name__)


def load_trainable_lm(name: str, dtype: str):
    """A fresh, trainable copy of the causal LM ``name`` (not the process-wide frozen one)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    source = resolve_backbone(name)
    config = AutoConfig.from_pretrained(source)
    if getattr(config, "is_encoder_decoder", False):
        raise SynthtuneError(f"SFT needs a decoder-only LM; {name} is an encoder-decoder")
    return AutoModelForCausalLM.from_pretrained(source, dtype=parse_dtype(dtype))


def default_lora_targets(model: torch.nn.Module) -> list[str]:
    """peft's usual LoRA target modules for this architecture (attention projections)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as mapping

    targets = mapping.get(getattr(model.config, "model_type", ""))
    if not targets:
        raise SynthtuneError(f"no default LoRA targets for model type {model.config.model_type!r}; "
                             f"set --model.init_args.lora_target_modules (e.g. [q_proj, v_proj])")
    return list(targets)


def add_lora(model: torch.nn.Module, r: int, alpha: int, dropout: float, targets: list[str]) -> torch.nn.Module:
    """Inject LoRA adapters into ``targets`` in place and leave only them trainable (W + BA·α/r)."""
    from peft import LoraConfig, inject_adapter_in_model

    names = [n for n, _ in model.named_modules()]
    if not any(n.split(".")[-1] in targets for n in names):
        linear = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise SynthtuneError(f"LoRA target modules {targets} match no layer of this model; "
                             f"pick from its linear layers {linear}")
    model.requires_grad_(False)
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    model = inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_("lora_" in name)
    return model


@method
class SFTModule(FlatBackboneOptions, SynthtuneModule):
    """Supervised fine-tuning of a causal LM on (question, answer) pairs, scored by GSM8K exact match.

    Args:
        backbone: the model to fine-tune: a name or its spec (:class:`BackboneSpec`; ``dtype`` ``fp32`` on a CPU or
            ``bf16``; ``compile`` and ``gradient_checkpointing`` are not supported here).
        finetune: ``full`` (every weight trains; checkpoints hold the whole model) or ``lora``
            (adapters only; checkpoints hold only the adapters).
        lora_r: LoRA rank r.
        lora_alpha: LoRA scaling α (the update is B·A·α/r).
        lora_dropout: dropout on the LoRA input.
        lora_target_modules: module names that get adapters; ``None`` uses peft's default for the
            architecture (Llama: q_proj, v_proj).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear learning-rate warm-up steps (0: none).
        max_new_tokens: longest test completion, in tokens.
        predictions_file: where ``test`` writes every prompt, completion and verdict (JSONL);
            ``None`` writes ``<default_root_dir>/test_predictions.jsonl``.
    """

    def __init__(
        self,
        backbone: BackboneSpec | str = DEFAULT_BACKBONE,
        finetune: Literal["full", "lora"] = "lora",
        lora_r: int = 8,
        lora_alpha: int = 16,
        lora_dropout: float = 0.0,
        lora_target_modules: list[str] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        max_new_tokens: int = 256,
        predictions_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if finetune not in ("full", "lora"):
            raise SynthtuneError(f"finetune must be full or lora, got {finetune!r}")
        if lora_r < 1 or lora_alpha <= 0 or not 0.0 <= lora_dropout < 1.0:
            raise SynthtuneError("need lora_r ≥ 1, lora_alpha > 0 and 0 ≤ lora_dropout < 1")
        if lr <= 0 or warmup_steps < 0 or max_new_tokens < 1:
            raise SynthtuneError("need lr > 0, warmup_steps ≥ 0 and max_new_tokens ≥ 1")
        self.backbone_spec = self.flat_backbone(backbone).name_and_dtype_only("sft")
        self.save_hyperparameters()
        model = load_trainable_lm(self.backbone_spec.name, self.backbone_spec.dtype)
        if finetune == "lora":
            targets = list(lora_target_modules) if lora_target_modules else default_lora_targets(model)
            self.lora_targets = targets
            model = add_lora(model, lora_r, lora_alpha, lora_dropout, targets)
        else:
            self.lora_targets = []
            model.requires_grad_(True)
        self.model = model
        self.tokenizer = load_tokenizer(self.backbone_spec.name)
        # Full fine-tuning: a checkpoint must hold every weight; LoRA: only the adapters.
        self.strict_loading = finetune == "full"
        self._test_rows: list[dict[str, Any]] = []

    # ------------------------------------------------------------ checkpoints
    def checkpoint_signature(self) -> dict[str, Any]:
        h = self.hparams
        signature = {"method": "sft", "backbone": self.backbone_spec.name, "finetune": h.finetune}
        if h.finetune == "lora":
            signature.update(lora_r=h.lora_r, lora_targets=sorted(self.lora_targets))
        return signature

    def trainable_state_keys(self) -> set[str]:
        """Every state key for full fine-tuning; the adapter weights for LoRA."""
        if self.hparams.finetune == "full":
            return set(self.state_dict())
        return {name for name, p in self.named_parameters() if p.requires_grad}

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Next-token cross-entropy on answer tokens only (labels are -100 elsewhere).
        loss = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          labels=batch["labels"]).loss
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["input_ids"].shape[0])

    def complete(self, prompts: list[str], use_chat_template: bool) -> tuple[list[str], list[bool]]:
        """Greedy completions (pass@1) of the test prompts, and whether each stopped at ``max_new_tokens``
        instead of at EOS (a cut-off answer usually lacks its final number)."""
        greedy = SamplingSettings(temperature=0.0, max_new_tokens=self.hparams.max_new_tokens)
        return generate_from_text(self.model, self.tokenizer, prompts, [0] * len(prompts), greedy,
                                  use_chat_template=use_chat_template)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        completions, capped = self.complete(list(batch["prompt"]), bool(batch["use_chat_template"]))
        hits = []
        for index, question, gold, completion, cap in zip(batch["index"].tolist(), batch["question"], batch["gold"],
                                                          completions, capped):
            predicted = extract_final_number(completion)
            hit = predicted is not None and predicted == gold
            hits.append(float(hit))
            self._test_rows.append({"index": index, "question": question, "completion": completion,
                                    "predicted": predicted, "gold": gold, "correct": hit, "hit_cap": cap})
        # Lightning averages over batches weighted by batch_size: the exact-match rate of all questions.
        self.log("test/exact_match", torch.tensor(hits).mean(), batch_size=len(hits), sync_dist=True)

    def on_test_epoch_start(self) -> None:
        self._test_rows = []

    def on_test_epoch_end(self) -> None:
        if not self._test_rows:
            return
        path = Path(self.hparams.predictions_file or Path(self.trainer.default_root_dir) / "test_predictions.jsonl")
        if self.trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{self.trainer.global_rank}{path.suffix}")
        atomic_write_jsonl(path, sorted(self._test_rows, key=lambda r: r["index"]))
        correct = sum(r["correct"] for r in self._test_rows)
        log.info("GSM8K exact match %d/%d = %.3f (greedy, pass@1); completions in %s",
                 correct, len(self._test_rows), correct / len(self._test_rows), path)

    # -------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        warmup = self.hparams.warmup_steps
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
