"""DawGen (Guo, Du, Li, Miao, "Generating Synthetic Datasets for Few-shot Prompt Tuning"): one soft
prompt Q_l per label for a frozen generator, trained with token weights W = Φ_W(h) that a bi-level
step makes label-discriminative; then label-conditioned generation.

One training step (Alg. 1) for a batch of real examples, counted as ONE step for ``max_steps``:
  1. virtual step Q'(W) = U(Q, ∇_Q L_DawGen(Q; W^t)), graph kept (torch.func.functional_call), where U
     is the generator optimizer's own update (``optimizer: adam`` or ``sgd``, its lr, its current
     moments; :func:`~synthtune.components.dawgen.lookahead.optimizer_update`), so Φ_W is trained for
     the update that step 3 really applies;
  2. W^{t+1}: Adam step of Φ_W on ∂ L_disc(Q'(W)) / ∂W (meta-gradient through step 1);
  3. real step of Q (the same optimizer) on L_DawGen(Q; W^{t+1}), W detached.

The objective is the paper's L_DawGen = E_l[L_wGen(Q_l)] + λ L_dist: the weighted generation loss
is averaged over each label's tokens, then over the labels of the batch; λ = 1 by default.

How each backward behaves under DDP (see also synthtune/components/lookahead.py):
  * steps 1-2 use ``torch.autograd.grad`` on the unwrapped submodules (``self.label_prompts``,
    ``self.weight_net``): local, no DDP hook fires, nothing is all-reduced by DDP; the Φ_W gradient
    is then averaged explicitly with ``all_reduce_grads`` before Φ_W's optimizer steps, so every
    rank applies the same W update;
  * step 3 is ``self.manual_backward(loss)`` through the DDP-wrapped module: DDP all-reduces Q's
    gradient. Φ_W takes no part in that graph (W is detached and its .grad is cleared before), so
    run DDP with ``strategy: ddp_find_unused_parameters_true``.
Only the Q optimizer goes through Lightning's optimizer wrapper; Φ_W's raw optimizer steps, so
``global_step`` advances once per batch. Both optimizer states are saved and restored.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from synthtune.components.backbone import DEFAULT_BACKBONE, embed_tokens
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.dawgen.losses import (dawgen_objective, discriminative_loss, distribution_hinge_loss,
                                                weighted_generation_loss)
from synthtune.components.dawgen.label_prompts import (LabelPrompts, all_label_logprobs, label_loglik_ratio, label_prefix,
                                                label_token_scores, pooled_representation, token_representations)
from synthtune.components.dawgen.lookahead import (MetaGradient, VirtualUpdate, all_reduce_grads, meta_gradient,
                                                   optimizer_update)
from synthtune.components.dawgen.token_weights import TokenWeightNet
from synthtune.components.padding import right_pad
from synthtune.components.engines import Engine
from synthtune.components.engines.native import NativeEngine
from synthtune.components.sampling import sample_seed
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.text_generation import eos_token_ids
from synthtune.contract import LabeledData
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.flat_options import FlatBackboneOptions
from synthtune.lightning_modules.generator_options import GeneratorOptions
from synthtune.lightning_modules.frozen_backbone import FrozenBackboneModule
from synthtune.registry import method

Batch = dict[str, Any]


def weight_entropy(weights: Tensor, mask: Tensor) -> Tensor:
    """Entropy of the token weights as a distribution over the batch's valid tokens, over log N (1 = uniform)."""
    w = weights[mask.bool()].float()
    p = w / w.sum()
    n = p.numel()
    return -(p * p.clamp_min(1e-30).log()).sum() / math.log(n) if n > 1 else w.new_ones(())


@method
class DawGenModule(GeneratorOptions, FlatBackboneOptions, FrozenBackboneModule):
    """DawGen: per-label soft prompts Q and a token weight net Φ_W over a frozen decoder-only LM or T5.

    Args:
        backbone: the frozen LM (decoder-only or T5): a name or its spec (:class:`BackboneSpec`; Q and Φ_W stay fp32).
        num_labels: L, the task's number of labels (checked against the data's label names).
        prompt_length: t, soft tokens per label.
        lam: λ ≥ 0, weight of the semantic regularizer L_dist in E_l[L_wGen] + λ L_dist (1 = the
            paper's objective; 0 gives the baselines).
        margin: hinge margin of L_dist.
        weight_mode: ``learned`` (Φ_W tuned by the meta-gradient) or ``uniform`` (every token weighs 1).
        weight_mlp_size: hidden width of Φ_W.
        pin_eos_weight: give each example's EOS token weight 1 instead of a learned one (not in the paper:
            L_disc gives EOS no reason to matter, so Φ_W learns to down-weight it and the generator stops
            ending its samples; see docs/results/dawgen_prompt_tuning.md).
        optimizer: the update rule of Q, ``adam`` or ``sgd``; the virtual step of Alg. 1 replays it.
        lr: learning rate of Q (of the real step, and of the virtual step unless ``inner_lr`` is set).
        weight_lr: learning rate of Φ_W.
        weight_optimizer: the update rule of Φ_W, ``adam`` (default) or ``sgd``. Adam divides each meta-gradient
            by its running scale, so a meta-gradient near zero still moves W by about ``weight_lr``; SGD keeps a
            tiny gradient a tiny step (the golden test uses it, so that CPUs' rounding stays rounding).
        inner_lr: step size of the virtual step when it should differ from ``lr`` (an ablation: Φ_W is
            then trained for an update that never happens); ``None`` (default) uses ``lr``.
        meta_every_n_steps: update Φ_W (steps 1-2) every this many steps; 1 is Alg. 1, larger values
            keep W fixed in between to save the double backward on a CPU.
        init_from_label_names: start each Q_l's last soft tokens at the embeddings of its label name.
        sampling: how predict samples (:class:`SamplingSettings`; ``max_new_tokens`` caps ``text`` or ``text_b``).
        seed: seed of the initialisation and of every sample's random stream.
    """

    data_kind = LabeledData

    def __init__(
        self,
        backbone: BackboneSpec | str = DEFAULT_BACKBONE,
        num_labels: int = 2,
        prompt_length: int = 16,
        lam: float = 1.0,
        margin: float = 1.0,
        weight_mode: Literal["learned", "uniform"] = "learned",
        weight_mlp_size: int = 64,
        pin_eos_weight: bool = False,
        optimizer: Literal["adam", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_lr: float = 1e-3,
        weight_optimizer: Literal["adam", "sgd"] = "adam",
        inner_lr: float | None = None,
        meta_every_n_steps: int = 1,
        init_from_label_names: bool = True,
        sampling: SamplingSettings = SamplingSettings(top_p=0.95, max_new_tokens=48),
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not math.isfinite(float(lam)) or lam < 0:
            raise SynthtuneError(f"lam (λ) must be a finite number >= 0, got {lam!r}; pass e.g. --model.init_args.lam 1.0")
        if (inner_lr is not None and inner_lr < 0) or meta_every_n_steps < 1 or lr <= 0:
            raise SynthtuneError("need lr > 0, inner_lr ≥ 0 (or null) and meta_every_n_steps ≥ 1; fix --model.init_args")
        for name, value in (("optimizer", optimizer), ("weight_optimizer", weight_optimizer)):
            if value not in ("adam", "sgd"):
                raise SynthtuneError(f"unknown {name} {value!r}; use adam or sgd")
        self.sampling = self.flat_sampling(sampling)
        bb = self.load_frozen_backbone(self.flat_backbone(backbone))
        self.save_hyperparameters()
        bb.check_prompt_length(prompt_length)
        self.max_positions = bb.max_positions
        self.start_engine(bb)  # vLLM takes Q_l and the embedded context tokens as prompt_embeds (decoder-only)
        # Each label starts from the input vectors of random vocabulary tokens: a prompt the model can read.
        init = self.random_token_prompt((num_labels, prompt_length), seed)
        self.label_prompts = LabelPrompts(num_labels, prompt_length, bb.hidden_size, init=init)
        torch.manual_seed(seed)
        self.weight_net = TokenWeightNet(bb.hidden_size, weight_mlp_size, mode=weight_mode)
        self.automatic_optimization = False
        self._named = False

    def checkpoint_signature(self) -> dict[str, Any]:
        h = self.hparams
        return {"method": "dawgen", "backbone": self.backbone_spec.name, "num_labels": h.num_labels,
                "prompt_length": h.prompt_length, "hidden_size": self.label_prompts.prompts.shape[-1],
                "weight_mode": h.weight_mode, "weight_mlp_size": h.weight_mlp_size}

    # ------------------------------------------------------------------ setup
    def connect(self, info: LabeledData) -> None:
        """Check the task against the prompts and the context length; name each label's prompt."""
        super().connect(info)
        names = list(info.label_names)
        if len(names) != self.hparams.num_labels:
            raise SynthtuneError(f"task {info.source!r} has {len(names)} labels but num_labels="
                                 f"{self.hparams.num_labels}; set --model.init_args.num_labels {len(names)}")
        if self.max_positions is not None and not self.backbone.config.is_encoder_decoder:
            ctx = info.max_context_length + 4 if info.is_pair else 0
            need = self.hparams.prompt_length + ctx + max(info.max_length, self.sampling.max_new_tokens)
            if need > self.max_positions:
                raise SynthtuneError(f"prompt_length {self.hparams.prompt_length} + context + text ({need} tokens) "
                                     f"exceeds the model's context of {self.max_positions}; shorten the prompt or max_length")
        if self.hparams.init_from_label_names and not self._named:
            self.name_prompts(names)

    @torch.no_grad()
    def name_prompts(self, names: list[str]) -> None:
        """Put each label's name (its token embeddings) at the end of its prompt; a checkpoint overrides it."""
        for label, name in enumerate(names):
            ids = self.tokenizer(" " + name.replace("_", " "), add_special_tokens=False)["input_ids"]
            self.label_prompts.set_tail(label, embed_tokens(self.backbone, torch.tensor(ids)).float())
        self._named = True

    # ----------------------------------------------------------------- losses
    def _inputs(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        return batch["target_ids"], batch["target_mask"], batch.get("context_ids"), batch.get("context_mask")

    def token_reps(self, batch: Batch) -> Tensor:
        """h_j for Φ_W: the frozen, prompt-free representation of each target token."""
        return token_representations(self.backbone, *self._inputs(batch))

    def token_weights(self, weight_net: torch.nn.Module, reps: Tensor, batch: Batch) -> Tensor:
        """W = Φ_W(h) over the batch's target tokens, with EOS pinned to 1 when ``pin_eos_weight``."""
        ids, mask = batch["target_ids"], batch["target_mask"]
        fixed = ids == self.tokenizer.eos_token_id if self.hparams.pin_eos_weight else None
        return weight_net(reps, mask, fixed)

    def dawgen_loss(self, prompts: Tensor, weights: Tensor, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(L_DawGen, L_wGen, L_dist) for the per-row prompts ``[B, t, d]`` and token weights ``[B, T]``."""
        scores = label_token_scores(self.backbone, prompts, *self._inputs(batch))
        mask = batch["target_mask"]
        l_wgen = weighted_generation_loss(scores.logprobs, weights, mask, batch["label"])  # E_l[L_wGen(Q_l)]
        if self.hparams.lam > 0:
            z = pooled_representation(scores.hidden, weights, mask)  # W·Z_{i,l}
            # D is cosine *similarity* (as a distance the hinge would push same-label pairs apart)
            l_dist = distribution_hinge_loss(z, batch["label"], margin=self.hparams.margin)
        else:
            l_dist = l_wgen.new_zeros(())
        return dawgen_objective(l_wgen, l_dist, self.hparams.lam), l_wgen, l_dist  # E_l[L_wGen] + λ L_dist

    def disc_loss(self, all_prompts: Tensor, batch: Batch) -> Tensor:
        """L_disc for the prompts of every label ``[L, t, d]``."""
        logprobs = all_label_logprobs(self.backbone, all_prompts, *self._inputs(batch))
        return discriminative_loss(logprobs, batch["label"], batch["target_mask"])

    def generator_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of Q (``optimizer``, ``lr``), fresh."""
        cls = torch.optim.Adam if self.hparams.optimizer == "adam" else torch.optim.SGD
        return cls(self.label_prompts.parameters(), lr=self.hparams.lr)

    def lookahead(self, optimizer: torch.optim.Optimizer) -> VirtualUpdate:
        """The virtual update U of Alg. 1: ``optimizer``'s own step from its current state."""
        params = {name: p for name, p in self.label_prompts.named_parameters() if p.requires_grad}
        return optimizer_update(optimizer, params, lr=self.hparams.inner_lr)

    def compute_meta_gradient(self, batch: Batch, reps: Tensor, write_grad: bool = False,
                              optimizer: torch.optim.Optimizer | None = None) -> MetaGradient:
        """Steps 1-2 of Alg. 1: ∂ L_disc(U(Q, ∇_Q L_DawGen(Q; W))) / ∂Φ_W, without changing Q; U is
        ``optimizer``'s step (the training run's Q optimizer; a fresh one when ``None``)."""
        labels = batch["label"]
        all_labels = torch.arange(self.hparams.num_labels, device=labels.device)

        def inner(call_q: Any, weight_net: torch.nn.Module) -> Tensor:
            return self.dawgen_loss(call_q(labels), self.token_weights(weight_net, reps, batch), batch)[0]

        def outer(call_q: Any) -> Tensor:
            return self.disc_loss(call_q(all_labels), batch)

        update = self.lookahead(optimizer if optimizer is not None else self.generator_optimizer())
        return meta_gradient(self.label_prompts, self.weight_net, inner, outer, update, write_grad=write_grad)

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: Batch, batch_idx: int) -> dict[str, Tensor]:
        opt_q, opt_w = self.optimizers()
        mask, n = batch["target_mask"], batch["target_ids"].shape[0]
        reps = self.token_reps(batch)
        learned = self.hparams.weight_mode == "learned"
        if learned and self.global_step % self.hparams.meta_every_n_steps == 0:
            meta = self.compute_meta_gradient(batch, reps, write_grad=True, optimizer=opt_q.optimizer)
            self.check_finite(meta.outer_loss, "disc loss")
            all_reduce_grads(self.weight_net.parameters())  # average the local meta-gradients across ranks
            opt_w.optimizer.step()  # raw optimizer: does not advance global_step
            opt_w.optimizer.zero_grad(set_to_none=True)
            disc = meta.outer_loss
        else:
            with torch.no_grad():  # no W step now: L_disc of the current Q, for the log only
                disc = self.disc_loss(self.label_prompts.prompts, batch)
        weights = self.token_weights(self.weight_net, reps, batch).detach()
        loss, l_wgen, l_dist = self.dawgen_loss(self.label_prompts(batch["label"]), weights, batch)
        self.check_finite(loss)
        opt_q.zero_grad()
        self.manual_backward(loss)
        opt_q.step()
        logs = {"train/loss": loss, "train/wgen": l_wgen, "train/disc": disc, "train/dist": l_dist,
                "train/weight_entropy": weight_entropy(weights, mask)}
        self.log_dict({k: v.detach() for k, v in logs.items()}, prog_bar=False, batch_size=n)
        self.log("loss", loss.detach(), prog_bar=True, logger=False, batch_size=n)
        return {"loss": loss.detach(), "token_weights": weights}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        weight_cls = torch.optim.Adam if self.hparams.weight_optimizer == "adam" else torch.optim.SGD
        return [self.generator_optimizer(), weight_cls(self.weight_net.parameters(), lr=self.hparams.weight_lr)]

    # ------------------------------------------------------------- generation
    def generation_params(self) -> dict[str, Any]:
        h = self.hparams
        return {"backbone": self.backbone_spec.name, "prompt_length": h.prompt_length, "weight_mode": h.weight_mode,
                "lam": h.lam, **self.sampling.as_dict(h.seed), **self.engine.params(),
                "checkpoint": self.checkpoint_fingerprint}

    def generate(self, labels: Tensor, seeds: list[int], context_ids: Tensor | None = None,
                 context_mask: Tensor | None = None, engine: Engine | None = None) -> list[str]:
        """One text per row, conditioned on the row's label prompt (and its ``text_a`` tokens)."""
        return self.generate_with_ends(labels, seeds, context_ids, context_mask, engine)[0]

    @torch.no_grad()
    def generate_with_ends(self, labels: Tensor, seeds: list[int], context_ids: Tensor | None = None,
                           context_mask: Tensor | None = None,
                           engine: Engine | None = None) -> tuple[list[str], list[bool]]:
        """:meth:`generate`, plus whether each text stopped at the ``max_new_tokens`` cap instead of at EOS.
        ``engine`` defaults to the module's (``--model.init_args.engine``); the context tokens are embedded by
        the backbone's own embedding module (Gemma scales its rows), whatever the engine."""
        s = self.sampling
        prompts = self.label_prompts(labels.to(self.device)).to(self.backbone.dtype)
        ctx = embed_tokens(self.backbone, context_ids) if context_ids is not None else None
        cmask = context_mask.to(self.device) if context_mask is not None else None
        if not self.backbone.config.is_encoder_decoder:
            prefix, mask = label_prefix(prompts, ctx, cmask)
            return self.sample(prefix, seeds, engine=engine, attention_mask=mask if ctx is not None else None)
        texts, hit_cap = [], []
        eos = eos_token_ids(self.backbone, self.tokenizer)
        sampling = {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p} if s.temperature > 0 \
            else {"do_sample": False}
        sampling["repetition_penalty"] = s.repetition_penalty  # on inputs_embeds HF counts only new tokens, as ours
        for row, seed in enumerate(seeds):  # T5: HF generate with the prompt (+ text_a) as encoder inputs_embeds
            n_ctx = int(cmask[row].sum()) if cmask is not None else 0
            parts = [prompts[row]] + ([ctx[row, :n_ctx]] if n_ctx else [])
            enc = torch.cat(parts).unsqueeze(0)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                out = self.backbone.generate(inputs_embeds=enc, attention_mask=torch.ones(enc.shape[:2], dtype=torch.long,
                                             device=enc.device), max_new_tokens=s.max_new_tokens, **sampling)
            texts.append(self.tokenizer.decode(out[0], skip_special_tokens=True).strip())
            # the decoder starts with its start token: a row that used every new token without an EOS hit the cap
            hit_cap.append(out.shape[1] - 1 >= s.max_new_tokens and int(out[0, -1]) not in eos)
        return texts, hit_cap

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Any]]:
        ids = batch["id"].tolist()
        seeds = [sample_seed(self.hparams.seed, i, "dawgen") for i in ids]
        texts, hit_cap = self.generate_with_ends(batch["label"], seeds, batch.get("context_ids"), batch.get("context_mask"))
        params = self.generation_params()
        rows = []
        for j, (i, text) in enumerate(zip(ids, texts)):
            row: dict[str, Any] = {"id": i}
            row.update({"text_a": batch["text_a"][j], "text_b": text} if "text_a" in batch else {"text": text})
            row.update(label=int(batch["label"][j]), label_name=batch["label_name"][j], hit_cap=hit_cap[j],
                       method="dawgen", params=params)
            rows.append(row)
        return rows

    @torch.no_grad()
    def sample_texts(self, num: int) -> list[str]:
        """A few samples, labels round-robin (pair tasks: over the real first sentences), for logging."""
        labels = torch.arange(num) % self.hparams.num_labels
        seeds = [sample_seed(self.hparams.seed, i, "dawgen-log") for i in range(num)]
        firsts, firsts_ids = self.data_info.first_sentences, self.data_info.first_sentence_ids
        native = NativeEngine()  # a log line during fit never starts an engine beside the training
        if not firsts:
            return self.generate(labels, seeds, engine=native)
        rows = [i % len(firsts) for i in range(num)]
        ctx, cmask = right_pad([firsts_ids[i] for i in rows], self.tokenizer.pad_token_id)
        return [f"{firsts[i]} || {b}" for i, b in zip(rows, self.generate(labels, seeds, ctx, cmask, native))]

    @torch.no_grad()
    def loglik_ratio(self, batch: Batch) -> Tensor:
        """Per example: mean token log-lik under its own label's prompt minus that under the other labels'."""
        batch = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        logprobs = all_label_logprobs(self.backbone, self.label_prompts.prompts, *self._inputs(batch))
        return label_loglik_ratio(logprobs, batch["label"], batch["target_mask"])
