"""SoftSRV (DeSalvo et al., ICLR 2025): learn a contextual soft prompt that makes a frozen LLM
reconstruct real examples, then sample new ones from it.

E(x):    mean of the last hidden states a decoder (the backbone by default) computes for x (App. A.7),
         standardised per dimension with the training contexts' mean and std (kept in the checkpoint)
fit:     P_θ(E(x_i)) → frozen decoder → next-token loss on x_i only (Eq. 1)
predict: P_θ(E(x_c)) for training contexts c taken round-robin → temperature / top-p sampling
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from synthtune.components.backbone import DEFAULT_BACKBONE
from synthtune.components.backbone_spec import BackboneSpec
from synthtune.components.encoders import (
    DEFAULT_CONTEXT_ENCODER,
    build_context_encoder,
    cached_encode,
    canonical_context_encoder,
    encoder_dim,
)
from synthtune.components.softsrv.context_standardizer import ContextStandardizer
from synthtune.components.softsrv.prefix_lm import reconstruction_loss
from synthtune.components.engines import Engine
from synthtune.components.engines.native import NativeEngine
from synthtune.components.sampling import sample_seed
from synthtune.components.sampling_settings import SamplingSettings
from synthtune.components.softsrv.soft_prompts import build_soft_prompt
from synthtune.contract import TextData
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.flat_options import FlatBackboneOptions
from synthtune.lightning_modules.generator_options import GeneratorOptions
from synthtune.lightning_modules.frozen_backbone import FrozenBackboneModule
from synthtune.registry import method


@method
class SoftSRVModule(GeneratorOptions, FlatBackboneOptions, FrozenBackboneModule):
    """SoftSRV: a trainable soft prompt P_θ(z) steering a frozen causal LM.

    Args:
        backbone: the frozen LM: a name (``smollm2-135m``, bundled; a local folder, a ``.gguf`` file or a hub
            id) or its spec with ``dtype``, ``compile`` and ``gradient_checkpointing`` (:class:`BackboneSpec`).
        parameterization: ``np`` (SS_NP, one shared prompt), ``mp`` (SS_MPk, mixture of k bases) or
            ``mc`` (SS_MC, one MLP per soft token).
        prompt_length: number of soft tokens t.
        num_basis: k, the number of basis prompts of ``mp``.
        mlp_hidden: hidden width of each ``mc`` MLP.
        mlp_layers: layers of each ``mc`` MLP.
        context_encoder: E(x), unused by ``np``: ``lm_hidden`` (the paper's, App. A.7: mean over x's
            tokens of the last hidden states the backbone computes), ``lm_static`` (mean of the
            backbone's static token embeddings, a bag of words; ``backbone`` is its deprecated old
            name), ``minilm`` (bundled sentence embedder), or another decoder's name/folder (mean of
            its last hidden states). z is standardised per dimension over the training contexts.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        sampling: how predict samples (:class:`SamplingSettings`).
        seed: seed of the prompt initialisation and of every sample's random stream.
    """

    data_kind = TextData

    def __init__(
        self,
        backbone: BackboneSpec | str = DEFAULT_BACKBONE,
        parameterization: Literal["np", "mp", "mc"] = "mc",
        prompt_length: int = 128,
        num_basis: int = 2,
        mlp_hidden: int = 128,
        mlp_layers: int = 3,
        context_encoder: str = DEFAULT_CONTEXT_ENCODER,
        lr: float = 5e-6,
        weight_decay: float = 0.0,
        sampling: SamplingSettings = SamplingSettings(),
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if prompt_length <= 0:
            raise SynthtuneError(f"prompt_length must be a positive number of soft tokens, got {prompt_length}")
        self.sampling = self.flat_sampling(sampling)
        bb = self.load_frozen_backbone(self.flat_backbone(backbone))
        self.save_hyperparameters()
        bb.check_prompt_length(prompt_length)
        self._bb = bb
        self.start_engine(bb)
        self.context_kind = canonical_context_encoder(context_encoder) if parameterization != "np" else ""
        self.context_dim = encoder_dim(self.context_kind, bb) if parameterization != "np" else 0
        # Standardises z with the training contexts' per-dimension mean/std; buffers, so in the checkpoint.
        self.context_norm = ContextStandardizer(self.context_dim) if parameterization != "np" else None
        init = self.random_token_prompt((prompt_length,), seed)
        torch.manual_seed(seed)
        self.soft_prompt = build_soft_prompt(parameterization, prompt_length, bb.hidden_size,
                                             max(self.context_dim, 1), num_basis=num_basis,
                                             mlp_hidden=mlp_hidden, mlp_layers=mlp_layers, init=init)
        self._contexts: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------ contexts
    def checkpoint_signature(self) -> dict[str, Any]:
        h = self.hparams
        return {"method": "softsrv", "backbone": self.backbone_spec.name, "parameterization": h.parameterization,
                "prompt_length": h.prompt_length, "context_encoder": self.context_kind,
                "context_dim": self.context_dim, "num_basis": h.num_basis, "mlp_hidden": h.mlp_hidden,
                "mlp_layers": h.mlp_layers}

    def connect(self, info: TextData) -> None:
        """Compute (or read from the cache) E(x) for the training and validation texts, once; fit the
        standardisation of z on the training contexts unless it is already fitted (an earlier fit in
        this process; a checkpoint loaded afterwards replaces it with the one it was trained with)."""
        super().connect(info)
        if not info.train_texts:
            raise SynthtuneError(f"{info.source} gives SoftSRV no training texts; point --data.init_args.path at them")
        if self.hparams.parameterization == "np":
            return
        encoder = build_context_encoder(self.context_kind, self._bb)
        self._contexts["train"] = cached_encode(encoder, list(info.train_texts))
        if info.val_texts:
            self._contexts["val"] = cached_encode(encoder, list(info.val_texts))
        if not self.context_norm.fitted:
            self.context_norm.fit(self._contexts["train"])

    def prompts(self, index: torch.Tensor, split: str = "train") -> torch.Tensor:
        """P_θ(E(x)) for the examples ``index`` of ``split``: [B, t, d]."""
        if self.hparams.parameterization == "np":
            return self.soft_prompt(None, batch_size=index.shape[0])
        z = self._contexts[split].to(self.device)[index.to(self.device)]
        return self.soft_prompt(self.context_norm(z))

    # --------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        prefix = self.prompts(batch["index"])
        loss = reconstruction_loss(self.backbone, prefix, batch["input_ids"], batch["attention_mask"])  # Eq. 1
        self.check_finite(loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        prefix = self.prompts(batch["index"], split="val")
        loss = reconstruction_loss(self.backbone, prefix, batch["input_ids"], batch["attention_mask"])
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["input_ids"].shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.soft_prompt.parameters(), lr=self.hparams.lr,
                                weight_decay=self.hparams.weight_decay)

    # ----------------------------------------------------------- generation
    def generation_params(self) -> dict[str, Any]:
        h = self.hparams
        return {"backbone": self.backbone_spec.name, "parameterization": h.parameterization,
                "prompt_length": h.prompt_length, **self.sampling.as_dict(h.seed), **self.engine.params(), "checkpoint": self.checkpoint_fingerprint}

    def generate(self, context_index: torch.Tensor, seeds: list[int], engine: Engine | None = None) -> list[str]:
        """Sample one text per (context, seed) pair."""
        return self.generate_with_ends(context_index, seeds, engine)[0]

    def generate_with_ends(self, context_index: torch.Tensor, seeds: list[int],
                           engine: Engine | None = None) -> tuple[list[str], list[bool]]:
        """Sample one text per (context, seed) pair; also whether each stopped at the length cap, not at EOS.
        ``engine`` defaults to the module's (``--model.init_args.engine``)."""
        return self.sample(self.prompts(context_index), seeds, engine=engine)

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> list[dict[str, Any]]:
        ids = batch["id"].tolist()
        seeds = [sample_seed(self.hparams.seed, i, "softsrv") for i in ids]
        texts, hit_cap = self.generate_with_ends(batch["context_index"], seeds)
        params = self.generation_params()
        return [{"id": i, "text": text, "context_index": c, "seed": s, "hit_cap": cap, "method": "softsrv",
                 "params": params}
                for i, text, c, s, cap in zip(ids, texts, batch["context_index"].tolist(), seeds, hit_cap)]

    @torch.no_grad()
    def sample_texts(self, num: int) -> list[str]:
        """A few samples from the current prompt, over the first training contexts (for logging)."""
        n_ctx = len(self._contexts.get("train", [])) or num
        index = torch.arange(num) % n_ctx
        was_training = self.training
        self.eval()
        try:
            # the native sampler: a log line during fit never starts an engine beside the training
            return self.generate(index, [sample_seed(self.hparams.seed, i, "softsrv-log") for i in range(num)],
                                 NativeEngine())
        finally:
            self.train(was_training)
