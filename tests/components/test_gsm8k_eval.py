import pytest

from synthtune.components.gsm8k_eval import (
    exact_match,
    extract_final_number,
    normalize_number,
)


@pytest.mark.parametrize("text, number", [
    ("She pays 3 * 4 = <<3*4=12>>12 dollars.\n#### 12", "12"),
    ("Total: 1,000 + 250\n#### 1,250", "1250"),
    ("#### $18.00", "18"),
    ("#### -7", "-7"),
    ("#### 2.50 dollars", "2.5"),
    ("So 4 + 5 = 9 apples. The answer is 9.", "9"),
    ("#### 22\n\nQuestion: Tom has 5 pens... #### 5", "22"),  # the first #### counts
    ("He earns $1,234.5 in total", "1234.5"),
    ("no number at all", None),
    ("#### none", None),
])
def test_final_number(text, number):
    assert extract_final_number(text) == number


def test_normalize_number():
    assert normalize_number("1,000.00") == "1000"
    assert normalize_number("$0.50") == "0.5"
    assert normalize_number("-") is None


def test_exact_match_against_a_reference_solution():
    gold = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    assert exact_match("48 + 24 = 72 clips.\n#### 72", gold)
    assert exact_match("She sold 72.0 clips altogether", gold)
    assert not exact_match("She sold 71 clips", gold)
    assert not exact_match("I do not know", gold)
    assert not exact_match("the answer is 72", "no number")
