import pytest

from synthtune.components.softsrv.template_prompts import (
    PAPER_PRESETS,
    PRESETS,
    TEMPLATE_SETS,
    check_template,
    ParsedList,
    parse_list,
    parse_question,
    preset,
    prime_reply,
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
    with pytest.raises(SynthtuneError, match="no paper prompt templates for task 'sst2'"):
        preset("sst2")
    with pytest.raises(SynthtuneError, match="unknown template_set 'mine'"):
        preset("gsm8k", "mine")
    assert preset("gsm8k", "synthtune") is PRESETS["gsm8k"]


#: Fig. 8's GSM8K question template as printed in the paper, with the example put in.
FIG8_GSM8K = ("Consider the following grade-school math problem: EXAMPLE Now generate 10 different questions that "
              "require solving a grade-school math problem similar to the example above. Make sure each question is "
              "different and sufficiently rephrased. Please make sure you generate questions, and not answers. Please "
              "make sure each question you generate has a well-defined answer. Question 1:")
FIG11_GSM8K_REFINE = ("Read the following grade-school math problem and the critique, and write a new grade-school "
                      "math problem based on the critique: Question: Q Critique: C If the critique is strongly positive, "
                      "say 'Stop'. Otherwise, write a new grade-school math problem based on the critique. Write the "
                      "question only, do not include the answer.")


def flat(text: str) -> str:
    return " ".join(text.split())


def test_paper_set_is_the_appendix_c_wording():
    """The default set reads word for word as Figs. 8, 9 and 11 once the placeholders are filled (our line
    breaks aside), and every preset of every set uses only its kind's placeholders."""
    gsm8k = preset("gsm8k")
    assert gsm8k is PAPER_PRESETS["gsm8k"]
    assert flat(gsm8k.question.format(example="EXAMPLE", num_questions=10)) == FIG8_GSM8K
    assert flat(gsm8k.refine.format(question="Q", critique="C")) == FIG11_GSM8K_REFINE
    assert gsm8k.critique.format(question="Q") == ("Please provide actionable feedback on the clarity, difficulty, "
                                                   "and originality of the following grade school math problem: Q")
    assert flat(gsm8k.answer.format(question="Q")) == "Please answer the following question that tests reasoning: Q Answer:"
    assert gsm8k.reply_prefix == "Question 1:" and preset("boolq").reply_prefix == "Passage and Question 1:"
    assert flat(preset("mbpp").question.format(example="E", num_questions=10)).startswith(
        "Consider the following python question: E Now generate 10 different questions that require writing a Python")
    assert "say 'Stop'. Otherwise, write a new Python question in a single sentence starting with 'Write a Python " \
           "function'" in preset("mbpp").refine
    undiversified = preset("gsm8k", "paper_undiversified")
    assert flat(undiversified.question.format(example="E")).startswith(
        "Please generate a question that requires solving a grade-school math problem. Here is an example of such a "
        "question: E Now generate a new question.")
    assert undiversified.reply_prefix == "" and undiversified.refine == gsm8k.refine
    for name, tasks in TEMPLATE_SETS.items():
        for templates in tasks.values():
            for kind in ("question", "critique", "refine", "answer"):
                check_template(getattr(templates, kind), kind)
            assert "{example}" in templates.question and "{question}" in templates.refine
    with pytest.raises(SynthtuneError, match="no paper_undiversified prompt templates for task 'mbpp'; use one of gsm8k"):
        preset("mbpp", "paper_undiversified")


def test_prime_reply_keeps_the_first_question_of_a_continued_list():
    """A reply to a template ending in "Question 1:" starts with question 1 unnumbered; the opener is put back."""
    reply = "Tom has 3 apples. How many?\n\nQuestion 2: Ann has 4 pens. How many?\nQuestion 3: Bo has 5."
    assert parse_list(reply).items == ("Ann has 4 pens. How many?", "Bo has 5.")  # lost without the opener
    assert parse_list(prime_reply(reply, "Question 1:")).items == (
        "Tom has 3 apples. How many?", "Ann has 4 pens. How many?", "Bo has 5.")
    already = "1. Tom has 3.\n2. Ann has 4."
    assert prime_reply(already, "Question 1:") == already
    assert prime_reply("text", "") == "text"
    boolq = "Passage: Cats purr.\nQuestion: do cats purr?\n\nPassage and Question 2: Dogs bark. do dogs bark?"
    assert parse_list(prime_reply(boolq, "Passage and Question 1:")).items == (
        "Passage: Cats purr.\nQuestion: do cats purr?", "Dogs bark. do dogs bark?")
