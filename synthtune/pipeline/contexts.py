"""The contexts stage: SoftSRV's training contexts in GP max-variance order over E(x) instead of round-robin.

The fit's own data module gives the training texts and its model's ``context_encoder`` gives E(x) (the same
vectors SoftSRV conditions on); :func:`~synthtune.components.synalign.gp_sampler.gp_select` then orders every
training example by exploration (each next one of largest GP posterior variance given those before it), so the
first ``num_samples`` generations use contexts spread over the data rather than the first rows of the file.
"""

from __future__ import annotations

from typing import Any, Optional

from lightning.pytorch.cli import instantiate_class

from synthtune.errors import SynthtuneError


def training_texts(composed: dict[str, Any]) -> list[str]:
    """The training texts a composed fit config trains on (its data module, set up as the fit sets it up)."""
    data, model = composed.get("data") or {}, composed.get("model") or {}
    if not data.get("class_path"):
        raise SynthtuneError("the fit's config has no data class; the contexts stage needs SoftSRV's TextDataModule")
    init = {**(data.get("init_args") or {})}
    backbone = (model.get("init_args") or {}).get("backbone")
    if backbone:
        init["backbone"] = backbone  # linked from the model by the CLI
    datamodule = instantiate_class((), {"class_path": data["class_path"], "init_args": init})
    datamodule.setup("fit")
    texts = list(getattr(datamodule, "train_texts", []))
    if not texts:
        raise SynthtuneError(f"{data['class_path']} gives no training texts; the contexts stage orders the "
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
    from synthtune.components.encoders import build_context_encoder, cached_encode
    from synthtune.components.synalign.coverage import kth_neighbour_scale
    from synthtune.components.synalign.gp_sampler import gp_select

    model = (composed.get("model") or {}).get("init_args") or {}
    texts = training_texts(composed)
    backbone = load_backbone(model["backbone"], model.get("dtype", "fp32")) if model.get("backbone") else load_backbone()
    encoder = build_context_encoder(model.get("context_encoder", "backbone"), backbone)
    emb = cached_encode(encoder, texts)
    scale = tau if tau is not None else kth_neighbour_scale(emb, 1, seed=seed)
    selection = gp_select(emb, len(texts), tau=scale, noise=noise, seed=seed)
    order = [int(i) for i in selection.indices]
    return order, {"contexts": len(order), "tau": float(scale), "noise": noise, "seed": seed,
                   "context_encoder": model.get("context_encoder", "backbone"), "first": order[:10]}
