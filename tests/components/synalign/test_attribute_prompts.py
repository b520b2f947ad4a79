"""Stage-1/stage-2 prompt templates and the forgiving-but-counting reply parsers (SynAlign Sec. 3.2)."""

import pytest

from synthtune.components.synalign.attribute_prompts import (
    DEFAULT_ATTRIBUTE_TEMPLATE,
    DEFAULT_GENERATION_TEMPLATE,
    FIXED_ATTRIBUTE_TEMPLATE,
    MAX_FOUND_ATTRIBUTES,
    ParseStats,
    check_template,
    fill,
    format_attributes,
    format_demonstrations,
    parse_attribute_lines,
    parse_attribute_list,
    parse_attributes,
    parse_items,
    read_attributes,
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
    total.add(ParseStats(attribute_replies=2, unparsed_attributes=1))
    total.add(ParseStats(attribute_replies=3, wrong_count=2, items_kept=4))
    assert total.as_dict()["attribute_replies"] == 5 and total.unparsed_attributes == 1 and total.items_kept == 4


def test_both_attribute_templates_show_every_demonstration_of_the_cluster():
    cluster = format_demonstrations(["a fine film .", "warm and\nfunny"])
    assert cluster == "1. a fine film .\n2. warm and funny" and format_demonstrations(["alone"]) == "alone"
    for template in (DEFAULT_ATTRIBUTE_TEMPLATE, FIXED_ATTRIBUTE_TEMPLATE):
        check_template(template, "attribute_template", ("text",))
        prompt = fill(template, text=cluster, label_name="positive", task="movie review")
        assert "1. a fine film ." in prompt and "2. warm and funny" in prompt and "JSON" in prompt
    assert '"topic"' in FIXED_ATTRIBUTE_TEMPLATE and '"topic"' not in DEFAULT_ATTRIBUTE_TEMPLATE


@pytest.mark.parametrize("reply, found, fixed, how", [
    ('{"Audience": "film buffs", "topic": "cinema"}', {"Audience": "film buffs", "topic": "cinema"},
     {"topic": "cinema"}, "json"),
    ("Sure! The attributes are:\n- **Topic**: war films\n- Tone: bleak\n3. target audience = veterans\nDone.",
     {"topic": "war films", "tone": "bleak", "target audience": "veterans"}, {"topic": "war films", "tone": "bleak"}, "lines"),
    ("topic: film; Length: short, style: terse", {"topic": "film", "length": "short", "style": "terse"},
     {"topic": "film", "style": "terse", "length": "short"}, "lines"),
    ('{"humour": "dry", "pacing": "slow"}', {"humour": "dry", "pacing": "slow"}, None, "json"),
])
def test_attributes_are_read_from_json_or_name_value_lines_per_mode(reply, found, fixed, how):
    assert read_attributes(reply, "found") == (found, how)
    assert read_attributes(reply, "fixed") == ((fixed, how) if fixed else (None, None))


def test_found_attributes_are_capped_and_chatter_alone_is_no_attribute():
    many = "\n".join(f"attribute {chr(97 + i)}: value {i}" for i in range(12))
    attributes, how = read_attributes(many)
    assert how == "lines" and list(attributes) == [f"attribute {chr(97 + i)}" for i in range(MAX_FOUND_ATTRIBUTES)]
    assert parse_attribute_lines("I cannot do that.\nHere are the attributes:") is None
    assert read_attributes("Sorry, no.") == (None, None)
    with pytest.raises(SynthtuneError, match="unknown attribute mode"):
        read_attributes("{}", "free")


def test_found_mode_reads_a_list_of_short_attribute_phrases_but_not_a_list_of_examples():
    # replies of the bundled 135M model to the found-attributes prompt
    phrases = ("The following attributes are most relevant:\n\n1. **Bold, serious, honest criticism**\n"
               "2. **Moral ambiguity**\n3. intriguing\n\nHere")
    expected = {"trait 1": "Bold, serious, honest criticism", "trait 2": "Moral ambiguity", "trait 3": "intriguing"}
    assert read_attributes(phrases, "found") == (expected, "list")
    assert read_attributes(phrases, "fixed") == (None, None)
    examples = "1. " + "this is a good movie with positive messages, which is a healthy way to live" + "\n2. another"
    assert parse_attribute_list(examples) is None and parse_attribute_list("- just one") is None
    assert format_attributes(expected).startswith("trait 1: Bold, serious, honest criticism; trait 2:")
