"""SynAlignGenerationModule + DemonstrationDataModule: two-stage prompting over demonstration clusters,
found or fixed attributes, counting and skipping bad replies, per-job seeds, resume, and refusing `fit`."""

import json

import pytest

from synthtune.cli import main
from synthtune.components.text_generation import generate_from_text
from synthtune.datamodules.synalign_demos import DemonstrationDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.synalign_generation import SynAlignGenerationModule

GEN = "synthtune.lightning_modules.synalign_generation"


@pytest.fixture()
def demos(tmp_path):
    rows = [{"text": "a gorgeous , moving film", "label": 1, "pool_index": 40},
            {"text": "tedious and flat", "label": "negative", "pool_index": 7},
            {"text": "warm and funny", "label": 1}]
    path = tmp_path / "demos.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


class ScriptedLLM:
    """Records (prompt, seed) calls; replies by the demonstration text in the prompt."""

    def __init__(self, attribute_replies, generation_replies):
        self.attribute_replies, self.generation_replies, self.calls = attribute_replies, generation_replies, []

    def __call__(self, model, tokenizer, prompts, seeds, settings, **kwargs):
        max_new_tokens = settings.max_new_tokens
        self.calls.append((list(prompts), list(seeds), max_new_tokens))
        table = self.attribute_replies if "JSON" in prompts[0] else self.generation_replies
        replies = [next(v for k, v in table.items() if k in p) for p in prompts]
        # a reply "stops at the cap" when it is as long (in characters) as the cap allows tokens
        return replies, [len(r) >= max_new_tokens for r in replies]  # (texts, hit_cap)


def batch_for(dm, jobs):
    return dm.collate(jobs)


@pytest.fixture()
def module(tiny_llama):
    return SynAlignGenerationModule(backbone=tiny_llama, gen_size=2, task_description="movie review",
                                    attribute_max_new_tokens=7, max_new_tokens=9)


def datamodule(path, **kwargs):
    dm = DemonstrationDataModule(path, task="sst2", gen_size=2, **kwargs)
    dm.setup("predict")
    return dm


def test_two_stages_make_labelled_rows_and_skip_bad_replies(module, demos, monkeypatch):
    llm = ScriptedLLM(
        {"gorgeous": '```json\n{"topic": "cinema", "tone": "awed"}\n```', "tedious": "I think it is negative.",
         "warm": '{"topic": "comedy"}'},
        {"gorgeous": "1. Stunning work.\n2. A triumph.", "warm": "1. Only one."})
    monkeypatch.setattr(f"{GEN}.generate_from_text", llm)
    dm = datamodule(demos)
    rows = module.predict_step(batch_for(dm, [0, 1, 2]), 0)
    assert [(r["id"], r["text"]) for r in rows] == [(0, "Stunning work."), (1, "A triumph.")]
    first = rows[0]
    assert first["label"] == 1 and first["label_name"] == "positive" and first["demo_indices"] == [40]
    assert first["cluster"] == 0 and first["params"]["attribute_mode"] == "found"
    assert first["attributes"] == {"topic": "cinema", "tone": "awed"} and first["method"] == "synalign"
    assert first["params"]["gen_size"] == 2 and first["params"] == rows[1]["params"]
    assert module.stats.as_dict() == {"attribute_replies": 3, "unparsed_attributes": 1, "repaired_json": 0,
                                      "line_attributes": 0, "generation_replies": 2, "wrong_count": 1, "dropped_replies": 1,
                                      "items_kept": 2}
    # the reply ran into the 9-token cap: only its last item can be cut off
    assert [r["hit_cap"] for r in rows] == [False, True]
    stage1, stage2 = llm.calls
    assert len(stage1[0]) == 3 and len(stage2[0]) == 2  # the invalid-JSON job never reaches stage 2
    assert stage1[2] == 7 and stage2[2] == 9
    assert "topic: cinema; tone: awed" in stage2[0][0] and '"positive"' in stage2[0][0]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_a_job_shows_every_demonstration_of_its_cluster_to_both_stages(module, tmp_path, monkeypatch):
    path = write_rows(tmp_path / "clusters.jsonl", [
        {"text": "a gorgeous , moving film", "label": 1, "pool_index": 40, "cluster": 0},
        {"text": "tedious and flat", "label": 0, "pool_index": 7, "cluster": 1},
        {"text": "warm and funny", "label": 1, "pool_index": 3, "cluster": 0},
        {"text": "a slog", "label": 0, "pool_index": 9, "cluster": 1}])
    llm = ScriptedLLM({"gorgeous": "Audience: families\nMood: uplifting", "tedious": '{"pace": "slow"}'},
                      {"gorgeous": "1. Lovely.\n2. Sweet.", "tedious": "1. Dull.\n2. Long."})
    monkeypatch.setattr(f"{GEN}.generate_from_text", llm)
    dm = datamodule(path, rounds=2)
    assert dm.num_jobs == 4 and [c["texts"] for c in dm.clusters] == [
        ["a gorgeous , moving film", "warm and funny"], ["tedious and flat", "a slog"]]
    rows = module.predict_step(batch_for(dm, [0, 1]), 0)
    (stage1, _, _), (stage2, _, _) = llm.calls
    for prompts in (stage1, stage2):
        assert "1. a gorgeous , moving film\n2. warm and funny" in prompts[0]
        assert "1. tedious and flat\n2. a slog" in prompts[1]
    assert "audience: families; mood: uplifting" in stage2[0] and "pace: slow" in stage2[1]
    assert [(r["text"], r["cluster"], r["demo_indices"], r["label"]) for r in rows] == [
        ("Lovely.", 0, [40, 3], 1), ("Sweet.", 0, [40, 3], 1), ("Dull.", 1, [7, 9], 0), ("Long.", 1, [7, 9], 0)]
    assert rows[0]["attributes"] == {"audience": "families", "mood": "uplifting"}
    assert module.stats.line_attributes == 1 and module.stats.unparsed_attributes == 0


def test_fixed_mode_asks_for_and_keeps_only_the_fixed_keys(tiny_llama, demos, monkeypatch):
    module = SynAlignGenerationModule(backbone=tiny_llama, gen_size=1, attribute_mode="fixed")
    llm = ScriptedLLM({"gorgeous": '{"Topic": "cinema", "pacing": "brisk"}', "tedious": '{"pacing": "slow"}'},
                      {"gorgeous": "1. Stunning."})
    monkeypatch.setattr(f"{GEN}.generate_from_text", llm)
    rows = module.predict_step(batch_for(datamodule(demos), [0, 1]), 0)
    assert '"topic", "style", "tone" and "length"' in llm.calls[0][0][0]
    assert [(r["text"], r["attributes"]) for r in rows] == [("Stunning.", {"topic": "cinema"})]
    assert module.stats.unparsed_attributes == 1 and rows[0]["params"]["attribute_mode"] == "fixed"


def test_a_cluster_with_two_labels_is_a_one_line_error(tmp_path):
    path = write_rows(tmp_path / "mixed.jsonl", [{"text": "good", "label": 1, "cluster": 3},
                                                 {"text": "bad", "label": 0, "cluster": 3}])
    with pytest.raises(SynthtuneError, match="cluster 3 is 'positive'; a cluster's demonstrations share one label"):
        datamodule(path)


def test_seeds_depend_on_the_job_not_on_the_batch(module, demos, monkeypatch):
    llm = ScriptedLLM({"": '{"topic": "x"}'}, {"": "1. a\n2. b"})
    monkeypatch.setattr(f"{GEN}.generate_from_text", llm)
    dm = datamodule(demos, rounds=2)
    module.predict_step(batch_for(dm, [4]), 0)
    module.predict_step(batch_for(dm, [1, 4, 5]), 0)
    alone, together = llm.calls[0][1][0], llm.calls[2][1][1]
    assert alone == together and len({*llm.calls[2][1], *llm.calls[3][1]}) == 6


def test_real_sampling_with_a_tiny_model_counts_unparseable_replies(module, demos, monkeypatch):
    sampled = []
    real_sampler = generate_from_text

    def spy(model, tokenizer, prompts, seeds, **kwargs):  # the real sampler, with its replies recorded
        replies, finished = real_sampler(model, tokenizer, prompts, seeds, **kwargs)
        sampled.append((list(prompts), replies))
        return replies, finished

    monkeypatch.setattr(f"{GEN}.generate_from_text", spy)
    dm = datamodule(demos)
    rows = module.predict_step(batch_for(dm, [0, 1]), 0)
    # One stage-1 call for the two jobs; a random model writes no "{", so neither reply holds a JSON
    # object, both jobs are skipped and stage 2 never runs.
    assert len(sampled) == 1
    prompts, replies = sampled[0]
    assert len(prompts) == 2 and "a gorgeous , moving film" in prompts[0] and "tedious and flat" in prompts[1]
    assert len(replies) == 2 and all(reply and "{" not in reply for reply in replies)
    assert module.stats.as_dict() == {"attribute_replies": 2, "unparsed_attributes": 2, "repaired_json": 0,
                                      "line_attributes": 0, "generation_replies": 0, "wrong_count": 0, "dropped_replies": 0,
                                      "items_kept": 0}
    assert rows == []


def test_resume_skips_only_finished_jobs(demos):
    dm = datamodule(demos, rounds=2)
    assert dm.num_jobs == 6 and dm.pending_jobs() == list(range(6))
    dm.skip_ids({0, 1, 2, 9})  # job 0 complete (ids 0, 1); job 1 half done; job 4 half done
    assert dm.pending_jobs() == [1, 2, 3, 4, 5]
    batch = next(iter(dm.predict_dataloader()))
    assert batch["job"].tolist() == [1, 2, 3, 4, 5] and batch["cluster"] == [1, 2, 0, 1, 2]
    assert batch["label"].tolist() == [0, 1, 1, 0, 1] and batch["demonstrations"][2] == ["a gorgeous , moving film"]


@pytest.mark.parametrize("kwargs, message", [
    ({"gen_size": 0}, "gen_size must be >= 1"),
    ({"attribute_template": "Describe {txt}"}, "unknown field"),
    ({"generation_template": "Write more like {text}"}, "must contain {attributes}, {gen_size}"),
    ({"count_policy": "keep"}, "count_policy"),
    ({"attribute_mode": "free"}, "attribute_mode must be 'found' or 'fixed'"),
])
def test_bad_settings_are_one_line_errors(tiny_llama, kwargs, message):
    with pytest.raises(SynthtuneError, match=message) as info:
        SynAlignGenerationModule(backbone=tiny_llama, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_demonstrations_are_one_line_errors(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"text": "x", "label": 5}) + "\n")
    with pytest.raises(SynthtuneError, match="outside the label set"):
        datamodule(str(path))
    path.write_text(json.dumps({"body": "x", "label": 0}) + "\n")
    with pytest.raises(SynthtuneError, match="lacks field"):
        datamodule(str(path))


def test_fit_is_refused_with_one_line(tiny_llama, demos, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--model", f"{GEN}.SynAlignGenerationModule", "--model.init_args.backbone", tiny_llama,
              "--data", "synthtune.datamodules.synalign_demos.DemonstrationDataModule",
              "--data.init_args.path", demos, "--data.init_args.task", "sst2",
              "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
              "--trainer.accelerator", "cpu", "--trainer.max_steps", "1"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert info.value.code == 2 and len(errors) == 1 and "nothing to train" in errors[0]
