"""One LightningModule per method, each registered by ``@method`` (``synthtune.registry``) in its own file; a name
resolves on first use, so a new method file needs no entry here."""

from synthtune.registry import method


def __getattr__(name: str):
    if name == "__all__":
        return method.names()
    return method.resolve(name)
