"""One LightningModule per method. Names resolve lazily, so importing one method does not import all."""

from importlib import import_module

_WHERE = {
    "SoftSRVModule": "softsrv",
    "DawGenModule": "dawgen",
    "PromptTuningModule": "prompt_tuning",
    "FineTuningModule": "fine_tuning",
    "TemplateGenerationModule": "template_generation",
    "SFTModule": "sft",
    "SynAlignGenerationModule": "synalign_generation",
    "MMDWeightModule": "mmd_weight",
    "SynthtuneModule": "base",
    "FrozenBackboneModule": "frozen_backbone",
    "PredictOnlyModule": "predict_only",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
