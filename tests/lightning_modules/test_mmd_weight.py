"""MMDWeightModule: `fit` lowers MMD² on a toy mixture with known weights; `predict` writes weights and resamples."""

import json

import numpy as np
import pytest
import torch

from helpers import trainer
from synthtune.callbacks.jsonl_writer import JsonlPredictionWriter
from synthtune.components.synalign.mmd import weighted_mmd2
from synthtune.datamodules.embeddings import EmbeddingDataModule
from synthtune.errors import SynthtuneError
from synthtune.lightning_modules.mmd_weight import (
    MMDWeightModule,
    effective_sample_size,
)

P_REAL = 0.8  # real: 80 % component A, 20 % component B; synthetic: 50/50, so the right weights are 1.6 : 0.4


def mixture(n, p_a, gen, dim=8):
    comp = (torch.rand(n, generator=gen) >= p_a).long()  # 0 = A, 1 = B
    centres = torch.zeros(2, dim)
    centres[1, 0] = 3.0
    return centres[comp] + 0.5 * torch.randn(n, dim, generator=gen), comp


@pytest.fixture()
def toy(tmp_path):
    gen = torch.Generator().manual_seed(0)
    syn, comp = mixture(600, 0.5, gen)
    real, _ = mixture(400, P_REAL, gen)
    paths = {}
    for name, x in (("syn", syn), ("real", real)):
        np.save(tmp_path / f"{name}.npy", x.numpy())
        rows = [{"id": 100 + i, "text": f"{name} {i}", "label": int(comp[i]) if name == "syn" else 0,
                 "method": "softsrv"} for i in range(len(x))]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[name] = str(tmp_path / f"{name}.jsonl"), str(tmp_path / f"{name}.npy")
    return {"syn": syn, "real": real, "comp": comp, "paths": paths}


def datamodule(toy, **kwargs):
    return EmbeddingDataModule(toy["paths"]["syn"][0], toy["paths"]["real"][0],
                               synthetic_embeddings=toy["paths"]["syn"][1], real_embeddings=toy["paths"]["real"][1],
                               batch_syn=200, batch_real=200, **kwargs)


def test_fit_lowers_mmd_towards_the_known_weights_and_predict_writes_weights_and_resamples(toy, tmp_path):
    model = MMDWeightModule(backbone="toy", hidden=16, lr=0.05, num_resample=3000, replace=True)
    root = tmp_path / "run"
    fit = trainer(root, max_steps=120, enable_checkpointing=True)
    fit.fit(model, datamodule=datamodule(toy))
    ckpt = root / "checkpoints"
    ckpt_file = next(ckpt.glob("*.ckpt"))
    state = torch.load(ckpt_file, weights_only=False)["state_dict"]
    assert state and all(k.startswith("net.") for k in state)

    weights = model.net.global_weights(toy["syn"])
    b_mass = float(weights[toy["comp"] == 1].sum())
    assert abs(b_mass - (1 - P_REAL)) < 0.1  # from 0.5 (uniform) towards the right 0.2
    before = float(weighted_mmd2(toy["syn"], toy["real"], model.bandwidths))
    after = float(weighted_mmd2(toy["syn"], toy["real"], model.bandwidths, weights))
    assert after < 0.3 * before

    fresh = MMDWeightModule(backbone="toy", hidden=16, num_resample=3000, replace=True)
    writer = JsonlPredictionWriter(output_path=str(root / "weights.jsonl"), preview=0)
    trainer(root, callbacks=[writer]).predict(fresh, datamodule=datamodule(toy), ckpt_path=str(ckpt_file),
                                              return_predictions=False)
    rows = [json.loads(line) for line in (root / "weights.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(600)) and rows[0]["synthetic_id"] == 100
    written = torch.tensor([r["weight"] for r in rows])
    assert torch.allclose(written, weights, atol=1e-6) and rows[0]["source_method"] == "softsrv"
    resampled = [json.loads(line) for line in (root / "resampled.jsonl").read_text().splitlines()]
    assert len(resampled) == 3000 and all(r["method"] == "synalign_mmd_resample" for r in resampled)
    # resampling respects the weights: the share of component B matches its weight mass (4 sigma at n=3000)
    share = np.mean([r["label"] for r in resampled])
    assert abs(share - b_mass) < 4 * np.sqrt(b_mass * (1 - b_mass) / 3000)
    report = json.loads((root / "resampled.jsonl.report.json").read_text())
    assert report["mmd2_resampled"] < 0.5 * report["mmd2_uniform"] and report["mmd2_weighted"] < report["mmd2_uniform"]
    assert 0 < report["effective_sample_size"] < 600


def test_resampling_without_replacement_draws_distinct_rows(toy, tmp_path):
    model = MMDWeightModule(backbone="toy", hidden=8, num_resample=100, replace=False)
    writer = JsonlPredictionWriter(output_path=str(tmp_path / "w.jsonl"), preview=0)
    trainer(tmp_path, callbacks=[writer]).predict(model, datamodule=datamodule(toy), return_predictions=False)
    resampled = [json.loads(line) for line in (tmp_path / "resampled.jsonl").read_text().splitlines()]
    assert len({r["synthetic_index"] for r in resampled}) == 100


def test_stratified_resampling_keeps_the_label_shares(toy, tmp_path):
    model = MMDWeightModule(backbone="toy", hidden=8, num_resample=101, replace=True, stratify_label=True)
    writer = JsonlPredictionWriter(output_path=str(tmp_path / "w.jsonl"), preview=0)
    trainer(tmp_path, callbacks=[writer]).predict(model, datamodule=datamodule(toy), return_predictions=False)
    resampled = [json.loads(line) for line in (tmp_path / "resampled.jsonl").read_text().splitlines()]
    share_b = float(toy["comp"].float().mean())
    assert len(resampled) == 101 and abs(sum(r["label"] for r in resampled) - 101 * share_b) <= 1


def test_nan_weights_stop_training_with_one_line(toy):
    model = MMDWeightModule(backbone="toy", hidden=8)
    model.build(8)
    model.bandwidths = [1.0]
    with torch.no_grad():
        model.net.out.bias.fill_(float("nan"))
    with pytest.raises(SynthtuneError, match="sample weights") as info:
        model.training_step({"syn": toy["syn"][:10], "real": toy["real"][:10]}, 0)
    assert "\n" not in str(info.value)


def test_all_identical_embeddings_are_a_one_line_error(tmp_path):
    for name in ("syn", "real"):
        np.save(tmp_path / f"{name}.npy", np.ones((5, 4), dtype=np.float32))
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": "same"}) + "\n" for _ in range(5)))
    dm = EmbeddingDataModule(str(tmp_path / "syn.jsonl"), str(tmp_path / "real.jsonl"),
                             synthetic_embeddings=str(tmp_path / "syn.npy"), real_embeddings=str(tmp_path / "real.npy"))
    with pytest.raises(SynthtuneError, match="all identical"):
        trainer(tmp_path, max_steps=1).fit(MMDWeightModule(backbone="toy"), datamodule=dm)


def test_a_checkpoint_for_another_projection_is_refused(toy, tmp_path):
    root = tmp_path / "run"
    trainer(root, max_steps=1).fit(MMDWeightModule(backbone="toy", hidden=8), datamodule=datamodule(toy))
    ckpt = next((root / "checkpoints").glob("*.ckpt"))
    with pytest.raises(SynthtuneError, match="hidden=8"):
        trainer(root).predict(MMDWeightModule(backbone="toy", hidden=16), datamodule=datamodule(toy),
                              ckpt_path=str(ckpt), return_predictions=False)


def test_effective_sample_size():
    assert effective_sample_size(torch.full((10,), 0.1)) == pytest.approx(10.0)
    assert effective_sample_size(torch.tensor([1.0, 0.0, 0.0])) == pytest.approx(1.0)
