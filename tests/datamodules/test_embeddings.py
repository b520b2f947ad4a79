"""EmbeddingDataModule: JSONL → cached embeddings, minibatch pairs with exact resume, predict ids."""

import json

import numpy as np
import pytest
import torch

from synthtune.datamodules.embeddings import EmbeddingDataModule
from synthtune.errors import SynthtuneError


def write_rows(path, n, prefix):
    path.write_text("".join(json.dumps({"id": 10 * i, "text": f"{prefix} number {i}", "label": i % 2}) + "\n"
                            for i in range(n)))
    return str(path)


def npy(path, array):
    np.save(path, np.asarray(array, dtype=np.float32))
    return str(path)


@pytest.fixture()
def files(tmp_path):
    gen = np.random.default_rng(0)
    return {"synthetic": write_rows(tmp_path / "syn.jsonl", 50, "synthetic"),
            "real": write_rows(tmp_path / "real.jsonl", 30, "real"),
            "synthetic_embeddings": npy(tmp_path / "syn.npy", gen.normal(size=(50, 6))),
            "real_embeddings": npy(tmp_path / "real.npy", gen.normal(size=(30, 6)))}


def test_texts_are_embedded_with_the_named_featurizer_and_cached(tmp_path, tiny_llama):
    syn = write_rows(tmp_path / "s.jsonl", 7, "synthetic")
    real = write_rows(tmp_path / "r.jsonl", 5, "real")
    dm = EmbeddingDataModule(syn, real, backbone=tiny_llama)
    dm.setup("fit")
    assert dm.syn_emb.shape == (7, 32) and dm.real_emb.shape == (5, 32) and dm.dim == 32
    again = EmbeddingDataModule(syn, real, backbone=tiny_llama)
    again.setup("fit")
    assert torch.equal(dm.syn_emb, again.syn_emb)


def test_minibatches_pair_synthetic_and_real_rows(files):
    dm = EmbeddingDataModule(**files, batch_syn=16, batch_real=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["syn"].shape == (16, 6) and batch["real"].shape == (8, 6)
    assert torch.equal(batch["syn"], dm.syn_emb[batch["index"]])
    # the real draw depends only on the synthetic rows (and the seed): reproducible, and varies across batches
    assert torch.equal(dm.real_indices(batch["index"]), dm.real_indices(batch["index"].clone()))
    assert not torch.equal(dm.real_indices(torch.arange(16)), dm.real_indices(torch.arange(16, 32)))
    small = EmbeddingDataModule(**files, batch_syn=16, batch_real=64)
    small.setup("fit")
    assert torch.equal(small.real_indices(torch.arange(4)), torch.arange(30))


def test_training_loader_resumes_mid_epoch_exactly(files):
    dm = EmbeddingDataModule(**files, batch_syn=8, batch_real=8)
    dm.setup("fit")
    loader = dm.train_dataloader()
    it = iter(loader)
    first = [next(it) for _ in range(3)]
    loader.mark_consumed()
    loader.mark_consumed()
    state = loader.state_dict()
    resumed = EmbeddingDataModule(**files, batch_syn=8, batch_real=8)
    resumed.setup("fit")
    new_loader = resumed.train_dataloader()
    new_loader.load_state_dict(state)
    batch = next(iter(new_loader))
    assert torch.equal(batch["index"], first[2]["index"]) and torch.equal(batch["real"], first[2]["real"])


def test_predict_iterates_only_pending_ids(files):
    dm = EmbeddingDataModule(**files, predict_batch_size=20)
    dm.setup("predict")
    dm.skip_ids(set(range(0, 50, 2)))
    ids = torch.cat([b["id"] for b in dm.predict_dataloader()]).tolist()
    assert ids == list(range(1, 50, 2))
    dm.skip_ids(set(range(50)))
    assert [b["id"].tolist() for b in dm.predict_dataloader()] == [[0]]  # one batch so end-of-predict hooks run


def test_embedding_dimensions_that_differ_are_a_one_line_error(files, tmp_path):
    files["real_embeddings"] = npy(tmp_path / "real8.npy", np.ones((30, 8)))
    dm = EmbeddingDataModule(**files)
    with pytest.raises(SynthtuneError, match="dimension 6 but real ones 8") as info:
        dm.setup("fit")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("change, message", [
    ({"synthetic_embeddings": "rows"}, "have shape"),
    ({"real": "empty"}, "has no rows"),
    ({"text_field": "body"}, "lacks field"),
    ({"synthetic_embeddings": "nan"}, "NaN or inf"),
    ({"batch_syn": 0}, "must all be >= 1"),
    ({"synthetic": "missing.jsonl"}, "synthetic file not found"),
])
def test_bad_inputs_are_one_line_errors(files, tmp_path, change, message):
    kwargs = dict(files)
    if change.get("synthetic_embeddings") == "rows":
        kwargs["synthetic_embeddings"] = npy(tmp_path / "short.npy", np.ones((3, 6)))
    elif change.get("synthetic_embeddings") == "nan":
        kwargs["synthetic_embeddings"] = npy(tmp_path / "nan.npy", np.full((50, 6), np.nan))
    elif change.get("real") == "empty":
        (tmp_path / "empty.jsonl").write_text("")
        kwargs["real"] = str(tmp_path / "empty.jsonl")
    else:
        kwargs.update(change)
    with pytest.raises(SynthtuneError, match=message) as info:
        EmbeddingDataModule(**kwargs).setup("fit")
    assert "\n" not in str(info.value)
