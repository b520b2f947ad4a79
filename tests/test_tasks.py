import pytest

from synthtune.errors import SynthtuneError
from synthtune.records import template_fields
from synthtune.tasks import TEMPLATE_STYLES, TEMPLATES, default_prompt_format, load_task


@pytest.mark.parametrize("task", sorted(TEMPLATES))
@pytest.mark.parametrize("style", TEMPLATE_STYLES)
def test_every_default_template_fits_its_task(task, style):
    spec = load_task(task)
    fmt = default_prompt_format(task, style)
    assert len(fmt.label_words) == spec.num_labels  # one word per label, in label order
    assert sorted(set(template_fields(fmt.template))) == sorted(spec.text_fields)
    assert len(set(fmt.label_words)) == len(fmt.label_words)
    if style == "decoder":  # an instruction and an answer cue after the input
        assert "?" in fmt.template and not fmt.template.rstrip().endswith("}")


def test_decoder_style_is_an_instruction_and_lmbff_is_kept_by_name():
    assert default_prompt_format("sst2", "lmbff").template == "{text} It was"
    assert default_prompt_format("sst2", "lmbff").label_words == (" terrible", " great")
    assert default_prompt_format("sst2").label_words == (" negative", " positive")
    assert default_prompt_format("rte").label_words == (" Yes", " No")  # entailment, not_entailment


def test_unknown_task_or_style_is_one_line():
    with pytest.raises(SynthtuneError, match="has no default template"):
        default_prompt_format("gsm8k")
    with pytest.raises(SynthtuneError, match="unknown template_style"):
        default_prompt_format("sst2", "chat")
