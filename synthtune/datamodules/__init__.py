"""Datamodules: files or datasets → batches for fit, ids for predict. Each is registered by ``@datamodule``
(``synthtune.registry``) in its own file; a name resolves on first use, so a new datamodule file needs no entry here."""

from synthtune.registry import datamodule


def __getattr__(name: str):
    if name == "__all__":
        return datamodule.names()
    return datamodule.resolve(name)
