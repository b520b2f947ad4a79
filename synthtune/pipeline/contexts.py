"""The contexts stage: SoftSRV's training contexts in GP max-variance order over E(x) instead of round-robin.

The fit's own model and data module, built from its config by the CLI's parser (:func:`synthtune.api.runs.instantiate`),
give the training texts and E(x) (the model's own ``context_encoder``, default included: the same vectors SoftSRV
conditions on); :func:`~synthtune.components.synalign.gp_sampler.gp_select` then orders every
training example by exploration (each next one of largest GP posterior variance given those before it), so the
first ``num_samples`` generations use contexts spread over the data rather than the first rows of the file.
"""

from __future__ import annotations

from typing import Any, Optional

from synthtune.api.runs import instantiate
from synthtune.errors import SynthtuneError


def training_texts(datamodule: Any) -> list[str]:
    """The training texts of a fit's data module, set up as the fit sets it up."""
    datamodule.setup("fit")
    texts = list(getattr(datamodule, "train_texts", []))
    if not texts:
        raise SynthtuneError(f"{type(datamodule).__name__} gives no training texts; the contexts stage orders the "
                             "contexts of SoftSRV's TextDataModule")
    return texts


def gp_context_order(composed: dict[str, Any], tau: Optional[float] = None, noise: float = 1e-4,
                     seed: int = 0) -> tuple[list[int], dict[str, Any]]:
    """Every training example's index in GP max-variance order over E(x), and a report (τ, the first picks).

    Args:
        composed: the fit's composed config (``settings.composed`` of its manifest).
        tau: GP RBF length scale; ``None``: the median distance to the nearest neighbour (as ``synalign select``
            sets it with a budget of every row).
        noise: GP noise variance.
        seed: seed of the first pick and of tie-breaking.
    """
    from synthtune.components.backbone import load_backbone
    from synthtune.components.backbone_spec import backbone_spec
    from synthtune.components.encoders import build_context_encoder, cached_encode
    from synthtune.components.synalign.coverage import kth_neighbour_scale
    from synthtune.components.synalign.gp_sampler import gp_select

    if not (composed.get("data") or {}).get("class_path"):
        raise SynthtuneError("the fit's config has no data class; the contexts stage needs SoftSRV's TextDataModule")
    model, datamodule = instantiate("fit", composed)  # built by the fit's own parser: links, paths, defaults
    kind = getattr(model, "context_kind", None)
    if not kind:
        raise SynthtuneError(f"{type(model).__name__} conditions on no context E(x); the contexts stage orders the "
                             "training contexts of a SoftSRV mp or mc fit")
    texts = training_texts(datamodule)
    # the model's loaded backbone (load_backbone returns it from its cache); else the spec its config gives
    spec = getattr(model, "backbone_spec", None) or backbone_spec(model.hparams.backbone)
    backbone = load_backbone(spec.name, spec.dtype, gradient_checkpointing=spec.gradient_checkpointing,
                             compile=spec.compile)
    encoder = build_context_encoder(kind, backbone)
    emb = cached_encode(encoder, texts)
    scale = tau if tau is not None else kth_neighbour_scale(emb, 1, seed=seed)
    selection = gp_select(emb, len(texts), tau=scale, noise=noise, seed=seed)
    order = [int(i) for i in selection.indices]
    return order, {"contexts": len(order), "tau": float(scale), "noise": noise, "seed": seed,
                   "context_encoder": kind, "first": order[:10]}
