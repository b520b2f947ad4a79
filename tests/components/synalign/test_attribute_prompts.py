"""Stage-1/stage-2 prompt templates and the forgiving-but-counting reply parsers (SynAlign Sec. 3.2)."""

import pytest

from synthtune.components.synalign.attribute_prompts import (
    DEFAULT_ATTRIBUTE_TEMPLATE,
    DEFAULT_GENERATION_TEMPLATE,
    ParseStats,
    check_template,
    fill,
    format_attributes,
    parse_attributes,
    parse_items,
    split_items,
)
from synthtune.errors import SynthtuneError


def test_default_templates_fill_every_field():
    check_template(DEFAULT_ATTRIBUTE_TEMPLATE, "attribute_template", ("text",))
    check_template(DEFAULT_GENERATION_TEMPLATE, "generation_template", ("attributes", "gen_size"))
    prompt = fill(DEFAULT_GENERATION_TEMPLATE, text="a fine film", label_name="positive", task="movie review",
                  attributes="tone: warm", gen_size=3)
    assert "a fine film" in prompt and "positive" in prompt and "tone: warm" in prompt and "1 to 3" in prompt


@pytest.mark.parametrize("template, message", [
    ("Summarise {txt}", "unknown field"),
    ("Summarise the example", "must contain {text}"),
    ("Summarise {text", "not a valid format string"),
])
def test_bad_templates_are_one_line_errors(template, message):
    with pytest.raises(SynthtuneError, match=message) as info:
        check_template(template, "attribute_template", ("text",))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("reply, expected", [
    ('{"topic": "film", "tone": "warm"}', {"topic": "film", "tone": "warm"}),
    ('Sure! Here it is:\n```json\n{"topic": "film", "length": 12}\n```\nHope this helps.', {"topic": "film", "length": "12"}),
    ('{"topic": "war", "style": ["terse", "dry"]}', {"topic": "war", "style": '["terse", "dry"]'}),
    ('{} then {"topic": "sports"}', {"topic": "sports"}),
])
def test_attribute_parser_finds_the_object(reply, expected):
    attributes, repaired = parse_attributes(reply)
    assert attributes == expected and not repaired


def test_attribute_parser_closes_a_truncated_object_after_its_last_complete_member():
    attributes, repaired = parse_attributes('{"topic": "politics", "style": "formal", "tone": "ang')
    assert attributes == {"topic": "politics", "style": "formal"} and repaired


@pytest.mark.parametrize("reply", ["", "I cannot do that.", "{not json at all", "[1, 2, 3]", '{"": ""}',
                                   '{"topic": null}', "topic: film, tone: warm", None])
def test_attribute_parser_survives_malformed_replies(reply):
    assert parse_attributes(reply) == (None, False)


def test_format_attributes_is_one_line():
    assert format_attributes({"topic": "film", "tone": "warm"}) == "topic: film; tone: warm"


def test_split_items_reads_numbered_bulleted_and_json_lists():
    assert split_items("Here you go:\n1. Great movie.\n2) Awful plot,\n   long scenes.\n3: \"Fine.\"") == [
        "Great movie.", "Awful plot, long scenes.", "Fine."]
    assert split_items("- one\n* two\n• three") == ["one", "two", "three"]
    assert split_items('["alpha", "Example 2: beta"]') == ["alpha", "beta"]
    assert split_items("Just one example without numbering.\nIt continues here.") == [
        "Just one example without numbering. It continues here."]
    assert split_items("") == [] and split_items("1.\n2.   ") == []


def test_wrong_item_counts_are_flagged_and_dropped_or_truncated():
    reply = "1. a\n2. b\n3. c"
    assert parse_items(reply, 3) == (["a", "b", "c"], False)
    assert parse_items(reply, 2, "drop") == ([], True)
    assert parse_items(reply, 2, "truncate") == (["a", "b"], True)
    assert parse_items("1. a", 2, "truncate") == (["a"], True)
    assert parse_items("", 2, "truncate") == ([], True)
    with pytest.raises(SynthtuneError, match="count policy"):
        parse_items(reply, 2, "keep")


def test_parse_stats_add_up():
    total = ParseStats()
    total.add(ParseStats(attribute_replies=2, invalid_json=1))
    total.add(ParseStats(attribute_replies=3, wrong_count=2, items_kept=4))
    assert total.as_dict()["attribute_replies"] == 5 and total.invalid_json == 1 and total.items_kept == 4
