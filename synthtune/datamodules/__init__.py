from synthtune.datamodules.text import TextDataModule

__all__ = ["TextDataModule"]
