"""``repetition_penalty`` is a sampling setting of every generator and reaches the shared sampler
(SoftSRV's end-to-end check is in test_softsrv.py)."""
import pytest
import torch

from synthtune.components import sampling
from synthtune.lightning_modules import (DawGenModule, SynAlignGenerationModule, TemplateGenerationModule)
from synthtune.lightning_modules import synalign_generation as synalign_mod
from synthtune.lightning_modules import template_generation as template_mod


def spy(monkeypatch, owner, name):
    """Wrap ``owner.name`` so each call's repetition_penalty is recorded."""
    seen, real = [], getattr(owner, name)

    def wrapped(*args, **kwargs):
        settings = kwargs.get("settings")  # generate_from_text takes the settings, the sampler the value
        seen.append(settings.repetition_penalty if settings is not None else kwargs.get("repetition_penalty", 1.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)
    return seen


@pytest.mark.parametrize("build, owner, name, call", [
    (lambda tiny: DawGenModule(backbone=tiny, prompt_length=3, weight_mlp_size=8, max_new_tokens=4,
                               repetition_penalty=1.3),
     sampling, "sample_from_prefix", lambda m: m.generate(torch.tensor([0, 1]), [1, 2])),
    (lambda tiny: TemplateGenerationModule(backbone=tiny, task=None, question_template="Q {num_questions}",
                                           max_new_tokens=4, repetition_penalty=1.3),
     template_mod, "generate_from_text", lambda m: m.generate(["hi"], [1], 1.0)),
    (lambda tiny: SynAlignGenerationModule(backbone=tiny, gen_size=1, max_new_tokens=4, repetition_penalty=1.3),
     synalign_mod, "generate_from_text", lambda m: m._sample(["hi"], [1], 4)),
], ids=["dawgen", "template_generation", "synalign"])
def test_every_generator_passes_its_penalty_to_the_sampler(tiny_llama, monkeypatch, build, owner, name, call):
    # text prompts go through generate_from_text; every generator reaches the shared sampler through its engine
    inner = spy(monkeypatch, sampling, "sample_from_prefix") if owner is not sampling else None
    seen = spy(monkeypatch, owner, name)
    module = build(tiny_llama)
    call(module)
    assert seen == [1.3] and (inner is None or inner == [1.3])
    assert module.sampling.as_dict()["repetition_penalty"] == 1.3
