"""Classes that register themselves with their package: a method with ``@method`` (``synthtune.lightning_modules``),
a datamodule with ``@datamodule`` (``synthtune.datamodules``). A package resolves a name it does not hold yet by
importing its own modules once (each registers what it defines), so a new method or datamodule is one new file
and no table to keep: ``from synthtune.lightning_modules import SoftSRVModule`` and
``class_path: synthtune.lightning_modules.SoftSRVModule`` keep working for every registered class."""

from __future__ import annotations

import pkgutil
from importlib import import_module
from typing import TypeVar

T = TypeVar("T", bound=type)


class Registry:
    """The classes one package's modules register, looked up by name."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.classes: dict[str, type] = {}
        self._loaded = False

    def __call__(self, cls: T) -> T:
        """The decorator: register ``cls`` under its name."""
        self.classes[cls.__name__] = cls
        return cls

    def load(self) -> None:
        """Import every module of the package once (each registers its classes)."""
        if not self._loaded:
            self._loaded = True
            for info in pkgutil.iter_modules(import_module(self.package).__path__):
                import_module(f"{self.package}.{info.name}")

    def names(self) -> list[str]:
        """Every registered name (the package's ``__all__``)."""
        self.load()
        return sorted(self.classes)

    def resolve(self, name: str) -> type:
        """The class registered as ``name`` (a package's ``__getattr__``)."""
        if name not in self.classes and not name.startswith("_"):
            self.load()
        if name in self.classes:
            return self.classes[name]
        raise AttributeError(f"module {self.package!r} has no attribute {name!r}")


#: Methods (LightningModules) and datamodules.
method = Registry("synthtune.lightning_modules")
datamodule = Registry("synthtune.datamodules")
