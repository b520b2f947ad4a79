import pytest

from synthtune.components.softsrv.template_prompts import (
    PRESETS,
    check_template,
    format_numbered_list,
    parse_numbered_list,
    preset,
    says_stop,
)
from synthtune.errors import SynthtuneError


@pytest.mark.parametrize("text", [
    "1. Tom has 3 apples.\n2. Ann reads 5 books.\n3. A bus carries 40 people.",
    "1) Tom has 3 apples.\n2) Ann reads 5 books.\n3) A bus carries 40 people.",
    "1: Tom has 3 apples.\n2: Ann reads 5 books.\n3: A bus carries 40 people.",
    "(1) Tom has 3 apples.\n(2) Ann reads 5 books.\n(3) A bus carries 40 people.",
    "Question 1: Tom has 3 apples.\nQuestion 2: Ann reads 5 books.\nQuestion 3: A bus carries 40 people.",
    "Q1. Tom has 3 apples.\nQ2. Ann reads 5 books.\nQ3. A bus carries 40 people.",
    "**1.** Tom has 3 apples.\n**2.** Ann reads 5 books.\n**3.** A bus carries 40 people.",
    "- 1. Tom has 3 apples.\n- 2. Ann reads 5 books.\n- 3. A bus carries 40 people.",
    "Sure! Here are 3 problems:\n\n  1. Tom has 3 apples.\n  2. Ann reads 5 books.\n  3. A bus carries 40 people.\n",
])
def test_numbered_lists_in_many_formats(text):
    assert parse_numbered_list(text) == ["Tom has 3 apples.", "Ann reads 5 books.", "A bus carries 40 people."]


def test_items_span_lines_until_the_next_marker_or_a_blank_line():
    text = ("1. A farmer has 12 cows.\nHe sells 1.5 cows a week.\nHow long until none are left?\n"
            "2. Second problem.\n\nI hope these help!\nMore chatter")
    assert parse_numbered_list(text) == [
        "A farmer has 12 cows.\nHe sells 1.5 cows a week.\nHow long until none are left?", "Second problem."]


def test_malformed_outputs_give_no_items():
    assert parse_numbered_list("") == []
    assert parse_numbered_list("I cannot help with that request.") == []
    assert parse_numbered_list("1.5 litres of water fill a jug.\n2.25 jugs are left.") == []  # decimals, not markers
    assert parse_numbered_list("1.\n2. ...\n3. **") == []  # markers without content


def test_format_then_parse_round_trips():
    items = ["What is 2 + 2?", "How many legs do 3 spiders have?"]
    assert format_numbered_list(items) == "1. What is 2 + 2?\n2. How many legs do 3 spiders have?"
    assert parse_numbered_list(format_numbered_list(items)) == items


@pytest.mark.parametrize("reply", ["Stop", "stop.", "**Stop**", "Stop. Every problem is clear.", "Verdict:\nSTOP!",
                                   "  Stop  "])
def test_stop_is_detected(reply):
    assert says_stop(reply)


@pytest.mark.parametrize("reply", ["Problem 2 mentions a bus stop.", "Stop using vague units in problem 3 and fix it",
                                   "1. unclear\n2. repeated", ""])
def test_critiques_that_are_not_stop(reply):
    # "Stop using ..." begins a sentence that goes on, so it is a critique, not the verdict
    assert not says_stop(reply)


def test_template_placeholders_are_checked():
    assert check_template("Give {num_questions} questions", "question")
    with pytest.raises(SynthtuneError, match=r"unknown placeholder\(s\) \{count\}"):
        check_template("Give {count} questions", "question")
    with pytest.raises(SynthtuneError, match="not a valid format string"):
        check_template("Give {num_questions questions", "question")


def test_presets_exist_and_use_only_their_placeholders():
    assert set(PRESETS) == {"gsm8k", "mbpp", "boolq"}
    for templates in PRESETS.values():
        check_template(templates.question, "question")
        check_template(templates.critique, "critique")
        check_template(templates.refine, "refine")
        check_template(templates.answer, "answer")
        assert "{num_questions}" in templates.question and "{questions}" in templates.critique
        assert "{critique}" in templates.refine and "{question}" in templates.answer
        assert "Stop" in templates.critique
    with pytest.raises(SynthtuneError, match="no prompt templates for task 'sst2'"):
        preset("sst2")
