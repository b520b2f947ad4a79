import json

import pytest

from synthtune.components.prompt_tuning.combination import plan_epoch
from synthtune.datamodules.fewshot import FewShotDataModule, sample_per_class
from synthtune.errors import SynthtuneError
from synthtune.tasks import load_task, read_labeled


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture()
def syn_file(tmp_path):
    rows = [{"text": f"synthetic review number {i}", "label": i % 2} for i in range(20)]
    return write(tmp_path / "syn.jsonl", rows)


def make(strategy="real", synthetic=None, **kw):
    dm = FewShotDataModule("sst2", seed=13, strategy=strategy, synthetic=synthetic, batch_size=kw.pop("batch_size", 8),
                           **kw)
    dm.setup("fit")
    return dm


def epoch_steps(dm, epoch=0):
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return list(loader)


def texts(part):
    return [r["text"] for r in part["rows"]] if part is not None else []


def test_kshot_split_files_give_16_per_class_and_a_dev_set():
    dm = make()
    assert len(dm.train_real) == 32 and sorted(r["label"] for r in dm.train_real) == [0] * 16 + [1] * 16
    assert len(dm.dev_rows) == 32
    dm.setup("test")
    assert len(dm.test_rows) == 821  # sst2 test split


def test_tasks_without_kshot_files_sample_k_per_class_by_seed():
    a = FewShotDataModule("sick", seed=13, k=4)
    a.setup("fit")
    b = FewShotDataModule("sick", seed=13, k=4)
    b.setup("fit")
    c = FewShotDataModule("sick", seed=21, k=4)
    c.setup("fit")
    assert sorted(r["label"] for r in a.train_real) == [0] * 4 + [1] * 4 + [2] * 4
    assert a.train_real == b.train_real and a.train_real != c.train_real
    key = lambda r: (r["text_a"], r["text_b"])
    assert len(a.dev_rows) == 12 and not {key(r) for r in a.dev_rows} & {key(r) for r in a.train_real}
    rows = [{"label": i % 3} for i in range(30)]
    assert sample_per_class(rows, 3, 2, seed=0, exclude={0, 1, 2}) == sorted(sample_per_class(rows, 3, 2, 0, {0, 1, 2}))


def test_test_limit_is_the_same_subset_for_every_seed():
    a = FewShotDataModule("sst2", seed=13, test_limit=50)
    b = FewShotDataModule("sst2", seed=42, test_limit=50)
    a.setup("test"), b.setup("test")
    assert len(a.test_rows) == 50 and a.test_rows == b.test_rows


def test_real_strategy_uses_real_batches_only():
    steps = epoch_steps(make())
    assert len(steps) == 4 and all(s["syn"] is None and len(s["real"]["rows"]) == 8 for s in steps)


def test_synthetic_only_strategy_trains_on_synthetic_rows_and_keeps_the_real_dev_set(syn_file):
    dm = make("syn", syn_file)
    steps = epoch_steps(dm)
    assert len(steps) == 3 and all(s["real"] is None for s in steps)
    assert sorted(t for s in steps for t in texts(s["syn"])) == sorted(f"synthetic review number {i}" for i in range(20))
    assert len(dm.dev_rows) == 32  # model selection still on the real 16-shot dev split
    with pytest.raises(SynthtuneError, match="needs synthetic data"):
        FewShotDataModule("sst2", strategy="syn")


@pytest.mark.parametrize("strategy", ["real+syn", "real+syn+ls"])
def test_concatenating_strategies_mix_both_sets_once_per_epoch(strategy, syn_file):
    dm = make(strategy, syn_file)
    steps = epoch_steps(dm)
    real = [t for s in steps for t in texts(s["real"])]
    syn = [t for s in steps for t in texts(s["syn"])]
    assert sorted(real) == sorted(r["text"] for r in dm.train_real)
    assert sorted(syn) == sorted(r["text"] for r in dm.train_syn)
    assert any(s["real"] is not None and s["syn"] is not None for s in steps)  # batches are mixed


@pytest.mark.parametrize("strategy,first,second", [("real->syn", "real", "syn"), ("syn->real", "syn", "real")])
def test_sequential_strategies_finish_one_set_before_the_other(strategy, first, second, syn_file):
    steps = epoch_steps(make(strategy, syn_file))
    kinds = ["real" if s["real"] is not None else "syn" for s in steps]
    assert all(s["real"] is None or s["syn"] is None for s in steps)
    n_first = 4 if first == "real" else 3  # 32 real / 8, 20 synthetic / 8
    assert kinds == [first] * n_first + [second] * (7 - n_first)


def test_paired_strategy_has_a_real_and_a_synthetic_batch_in_every_step(syn_file):
    dm = make("paired", syn_file)
    steps = epoch_steps(dm)
    assert len(steps) == 4  # the longer (real) set sets the length; the synthetic set cycles
    assert all(len(s["real"]["rows"]) == 8 and s["syn"] is not None for s in steps)
    assert all(r["text"].startswith("synthetic") for s in steps for r in s["syn"]["rows"])
    plan = plan_epoch("paired", 32, 20, 8, epoch=0, seed=13)
    assert [texts(s["real"]) for s in steps] == [[dm.train_real[i]["text"] for i in p["real"]] for p in plan]


def test_epochs_reshuffle_and_the_plan_is_reproducible(syn_file):
    dm = make("paired", syn_file)
    e0, e1 = epoch_steps(dm, 0), epoch_steps(dm, 1)
    assert [texts(s["real"]) for s in e0] != [texts(s["real"]) for s in e1]
    assert [texts(s["real"]) for s in epoch_steps(make("paired", syn_file), 1)] == [texts(s["real"]) for s in e1]


def test_ranks_split_every_step_into_equal_disjoint_shares(syn_file):
    single = epoch_steps(make("paired", syn_file))
    shards = []
    for rank in (0, 1):
        dm = make("paired", syn_file)
        dm._rank_world = lambda rank=rank: (rank, 2)
        shards.append(epoch_steps(dm))
    for whole, a, b in zip(single, *shards):
        for kind in ("real", "syn"):
            assert len(texts(a[kind])) == len(texts(b[kind]))
            assert texts(a[kind]) + texts(b[kind]) == texts(whole[kind])


def test_loader_resumes_after_the_consumed_steps(syn_file):
    dm = make("real+syn", syn_file)
    full = epoch_steps(dm)
    loader = dm.train_dataloader()
    it = iter(loader)
    for _ in range(3):
        next(it)
        loader.mark_consumed()
    state = loader.state_dict()
    resumed = make("real+syn", syn_file).train_dataloader()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(state["epoch"])
    assert [texts(s["real"]) for s in resumed] == [texts(s["real"]) for s in full[3:]]


@pytest.mark.parametrize("rows,needle", [
    ([{"text": "a", "label": 0}, {"text": "b", "label": 7}], "outside the label set"),
    ([{"text": "a", "label": "neutral"}], "outside the label set"),
    ([{"text_a": "a", "text_b": "b", "label": 0}], "same fields as the real data"),
    ([{"text": "a", "text_b": "b", "label": 0}], "same fields as the real data"),
])
def test_bad_synthetic_files_are_one_line_errors(tmp_path, rows, needle):
    path = write(tmp_path / "bad.jsonl", rows)
    with pytest.raises(SynthtuneError, match=needle) as info:
        make("real+syn", path)
    assert "\n" not in str(info.value)


def test_empty_synthetic_set_with_a_strategy_that_needs_one(tmp_path):
    empty = write(tmp_path / "empty.jsonl", [])
    with pytest.raises(SynthtuneError, match="synthetic set is empty"):
        make("paired", empty)
    with pytest.raises(SynthtuneError, match="needs synthetic data"):
        FewShotDataModule("sst2", strategy="real->syn")
    assert make("real", empty).train_syn == []


def test_empty_generated_samples_are_skipped_with_one_warning(tmp_path, caplog):
    rows = [{"text_a": "A premise.", "text_b": "A hypothesis.", "label": "entailment"},
            {"text_a": "A premise.", "text_b": " ", "label": "not_entailment"},
            {"text_a": "Another premise.", "text_b": "", "label": "entailment"}]
    path = write(tmp_path / "syn.jsonl", rows)
    dm = FewShotDataModule("rte", seed=13, strategy="paired", synthetic=path, batch_size=4)
    with caplog.at_level("WARNING"):
        dm.setup("fit")
    assert [r["text_b"] for r in dm.train_syn] == ["A hypothesis."]
    assert "skipped 2 of 3 row(s) with an empty text_a or text_b" in caplog.text
    real = write(tmp_path / "real.jsonl", rows[1:])  # in real data an empty hypothesis stays an error
    with pytest.raises(SynthtuneError, match="row 0 has no text_b"):
        read_labeled(real, load_task("rte"))


def test_unknown_strategy_is_one_line():
    with pytest.raises(SynthtuneError, match="unknown combination strategy 'mix'"):
        FewShotDataModule("sst2", strategy="mix")


def test_pair_task_rows_keep_both_fields(tmp_path):
    syn = write(tmp_path / "syn.jsonl", [{"text_a": "p", "text_b": "h", "label": "not_entailment"}])
    dm = FewShotDataModule("rte", seed=13, strategy="paired", synthetic=syn, batch_size=4)
    dm.setup("fit")
    step = epoch_steps(dm)[0]
    assert set(step["real"]["rows"][0]) == {"text_a", "text_b"}
    assert step["syn"]["rows"] == [{"text_a": "p", "text_b": "h"}] and step["syn"]["label"].tolist() == [1]
