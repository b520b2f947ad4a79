"""Datamodules: files or datasets → batches for fit, ids for predict. Names resolve lazily."""

from importlib import import_module

_WHERE = {
    "TextDataModule": "text",
    "LabeledDataModule": "labeled",
    "FewShotDataModule": "fewshot",
    "PromptDataModule": "prompts",
    "QADataModule": "qa",
    "DemonstrationDataModule": "synalign_demos",
    "EmbeddingDataModule": "embeddings",
    "SynthtuneDataModule": "base",
}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
