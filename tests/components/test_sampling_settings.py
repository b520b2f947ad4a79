import pytest

from synthtune.components.sampling_settings import SamplingSettings
from synthtune.errors import SynthtuneError


def test_valid_settings_are_kept_as_given():
    s = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=1, seed=5)
    assert s.as_dict() == {"temperature": 0.0, "top_p": 1.0, "max_new_tokens": 1, "seed": 5}


@pytest.mark.parametrize("kwargs, needle", [
    ({"temperature": -0.1}, "temperature=-0.1"),
    ({"temperature": float("nan")}, "temperature=nan"),
    ({"top_p": 0.0}, "top_p=0.0"),
    ({"top_p": 1.5}, "top_p=1.5"),
    ({"max_new_tokens": 0}, "max_new_tokens=0"),
])
def test_each_bad_value_is_named_in_one_line(kwargs, needle):
    with pytest.raises(SynthtuneError, match=needle) as info:
        SamplingSettings(**kwargs)
    assert "\n" not in str(info.value) and "--model.init_args" in str(info.value)
