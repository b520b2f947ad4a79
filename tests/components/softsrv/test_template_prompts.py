import pytest

from synthtune.components.softsrv.template_prompts import (
    PRESETS,
    check_template,
    ParsedList,
    parse_list,
    parse_question,
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
    assert parse_list(text) == ParsedList(("Tom has 3 apples.", "Ann reads 5 books.", "A bus carries 40 people."),
                                          "numbered", 0)


def test_items_span_lines_until_the_next_marker_or_a_blank_line():
    text = ("1. A farmer has 12 cows.\nHe sells 1.5 cows a week.\nHow long until none are left?\n"
            "2. Second problem.\n\nI hope these help!\nMore chatter")
    assert parse_list(text).items == (
        "A farmer has 12 cows.\nHe sells 1.5 cows a week.\nHow long until none are left?", "Second problem.")


@pytest.mark.parametrize("bullet", ["-", "*", "•", "+"])
def test_bulleted_lists(bullet):
    text = f"Here you go:\n{bullet} Tom has 3 apples.\n{bullet} **Ann reads 5 books.**\n{bullet}\n"
    # the third bullet has no text: dropped and counted
    assert parse_list(text) == ParsedList(("Tom has 3 apples.", "Ann reads 5 books."), "bulleted", 1)


def test_one_question_per_line_is_the_fallback_and_headers_are_dropped():
    text = "Here are three new problems:\n\nTom has 3 apples.\nAnn reads 5 books.\n---\nA bus carries 40 people."
    assert parse_list(text) == ParsedList(("Tom has 3 apples.", "Ann reads 5 books.", "A bus carries 40 people."),
                                          "lines", 2)
    # decimals are not markers, so these are two lines, not a numbered list
    assert parse_list("1.5 litres of water fill a jug.\n2.25 jugs are left.") == ParsedList(
        ("1.5 litres of water fill a jug.", "2.25 jugs are left."), "lines", 0)


def test_replies_without_a_list_give_no_items():
    assert parse_list("") == ParsedList((), "none", 0)
    assert parse_list("I cannot help with that request.") == ParsedList((), "none", 0)  # one line is no list
    assert parse_list("1.\n2. ...\n3. **") == ParsedList((), "none", 3)  # markers without content
    assert parse_list("Sure:\n\n***") == ParsedList((), "none", 2)


@pytest.mark.parametrize("reply, question", [
    ("Tom has 3 apples. He eats one. How many are left?", "Tom has 3 apples. He eats one. How many are left?"),
    ("Here is the rewritten problem:\n\nTom has 3 apples.\nHow many are left?\n\nThis version is clearer.",
     "Tom has 3 apples.\nHow many are left?"),
    ("**Rewritten problem:** Tom has 3 apples. How many are left?", "Tom has 3 apples. How many are left?"),
    ("Question: \"Tom has 3 apples. How many are left?\"", "Tom has 3 apples. How many are left?"),
    ("1. Tom has 3 apples. How many are left?\n2. Another one.", "Tom has 3 apples. How many are left?"),
    ("Her task: bake 12 cakes in 3 hours. How many per hour?", "Her task: bake 12 cakes in 3 hours. How many per hour?"),
    ("Revised version:\n", ""),
    ("", ""),
])
def test_one_rewritten_question_is_parsed(reply, question):
    assert parse_question(reply) == question


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
    assert check_template("Like {example}, give {num_questions} questions", "question")
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
        # App. C: an example inserted into the question template; the critique and rewrite see one question
        assert "{example}" in templates.question and "{num_questions}" in templates.question
        assert "{question}" in templates.critique and "{example}" in templates.critique
        assert "{question}" in templates.refine and "{critique}" in templates.refine
        assert "{question}" in templates.answer
        assert "Stop" in templates.critique
    with pytest.raises(SynthtuneError, match="no prompt templates for task 'sst2'"):
        preset("sst2")
