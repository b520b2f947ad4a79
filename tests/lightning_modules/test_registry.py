"""Methods and datamodules register themselves (synthtune.registry): their packages resolve them by name, with no
table to keep, for imports and for ``class_path`` in configs."""

import pytest

import synthtune.datamodules as datamodules
import synthtune.lightning_modules as lightning_modules
from synthtune.lightning_modules.base import SynthtuneModule
from synthtune.registry import method


def test_every_method_and_datamodule_resolves_from_its_package():
    assert {"SoftSRVModule", "DawGenModule", "PromptTuningModule", "FineTuningModule", "TemplateGenerationModule",
            "SFTModule", "SynAlignGenerationModule", "MMDWeightModule"} <= set(lightning_modules.__all__)
    assert {"TextDataModule", "LabeledDataModule", "FewShotDataModule", "PromptDataModule", "QADataModule",
            "DemonstrationDataModule", "EmbeddingDataModule"} <= set(datamodules.__all__)
    from synthtune.lightning_modules import SoftSRVModule  # old checkpoints and configs name them so
    from synthtune.lightning_modules.softsrv import SoftSRVModule as defined

    assert SoftSRVModule is defined
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchModule'"):
        lightning_modules.NoSuchModule  # noqa: B018


def test_a_new_method_registers_itself_and_works_as_a_class_path():
    @method
    class RegistryProbeModule(SynthtuneModule):
        """A method defined outside the package's table.

        Args:
            width: a number.
        """

        def __init__(self, width: int = 3) -> None:
            super().__init__()
            self.width = width

    try:
        assert lightning_modules.RegistryProbeModule is RegistryProbeModule
        from lightning.pytorch.cli import instantiate_class

        built = instantiate_class((), {"class_path": "synthtune.lightning_modules.RegistryProbeModule",
                                       "init_args": {"width": 5}})
        assert isinstance(built, RegistryProbeModule) and built.width == 5
    finally:
        del method.classes["RegistryProbeModule"]
