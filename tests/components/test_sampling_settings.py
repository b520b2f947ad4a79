import pytest

from synthtune.components.sampling_settings import SamplingSettings
from synthtune.errors import SynthtuneError


def test_valid_settings_are_kept_as_given():
    s = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=1)
    assert s.as_dict() == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 1}
    # a row's params record the run seed beside the settings (the keys rows have always carried)
    assert s.as_dict(seed=5) == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 1, "seed": 5}


def test_a_repetition_penalty_is_recorded_only_when_it_is_on():
    """Rows written before the option existed carry no penalty, so they still resume under the default."""
    assert "repetition_penalty" not in SamplingSettings().as_dict()
    assert SamplingSettings(repetition_penalty=1.2).as_dict()["repetition_penalty"] == 1.2


@pytest.mark.parametrize("kwargs, needle", [
    ({"temperature": -0.1}, "temperature=-0.1"),
    ({"temperature": float("nan")}, "temperature=nan"),
    ({"top_p": 0.0}, "top_p=0.0"),
    ({"top_p": 1.5}, "top_p=1.5"),
    ({"max_new_tokens": 0}, "max_new_tokens=0"),
    ({"repetition_penalty": 0.0}, "repetition_penalty=0.0"),
    ({"repetition_penalty": float("inf")}, "repetition_penalty=inf"),
])
def test_each_bad_value_is_named_in_one_line(kwargs, needle):
    with pytest.raises(SynthtuneError, match=needle) as info:
        SamplingSettings(**kwargs)
    assert "\n" not in str(info.value) and "--model.init_args.sampling" in str(info.value)
