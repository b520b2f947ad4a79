from synthtune.lightning_modules.softsrv import SoftSRVModule

__all__ = ["SoftSRVModule"]
