"""MMDWeightModule: `fit` lowers MMD² on a toy mixture with known weights; `predict` writes weights and resamples;
label-aware weights (the default) keep the synthetic label proportions, label-blind ones shift them."""

import json
import re

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
    real, real_comp = mixture(400, P_REAL, gen)
    paths = {}
    for name, x, labels in (("syn", syn, comp), ("real", real, real_comp)):
        np.save(tmp_path / f"{name}.npy", x.numpy())
        rows = [{"id": 100 + i, "text": f"{name} {i}", "label": int(labels[i]), "method": "softsrv"} for i in range(len(x))]
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths[name] = str(tmp_path / f"{name}.jsonl"), str(tmp_path / f"{name}.npy")
    return {"syn": syn, "real": real, "comp": comp, "paths": paths}


def datamodule(toy, **kwargs):
    return EmbeddingDataModule(toy["paths"]["syn"][0], toy["paths"]["real"][0],
                               synthetic_embeddings=toy["paths"]["syn"][1], real_embeddings=toy["paths"]["real"][1],
                               batch_syn=200, batch_real=200, **kwargs)


def test_fit_lowers_mmd_towards_the_known_weights_and_predict_writes_weights_and_resamples(toy, tmp_path):
    model = MMDWeightModule(backbone="toy", hidden=16, lr=0.05, num_resample=3000, replace=True, label_mode="blind")
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

    fresh = MMDWeightModule(backbone="toy", hidden=16, num_resample=3000, replace=True, label_mode="blind")
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
    model = MMDWeightModule(backbone="toy", hidden=8, num_resample=101, replace=True, label_mode="blind",
                            stratify_label=True)
    writer = JsonlPredictionWriter(output_path=str(tmp_path / "w.jsonl"), preview=0)
    trainer(tmp_path, callbacks=[writer]).predict(model, datamodule=datamodule(toy), return_predictions=False)
    resampled = [json.loads(line) for line in (tmp_path / "resampled.jsonl").read_text().splitlines()]
    share_b = float(toy["comp"].float().mean())
    assert len(resampled) == 101 and abs(sum(r["label"] for r in resampled) - 101 * share_b) <= 1


@pytest.fixture()
def shifted(tmp_path):
    """Real: 320 rows of label 0 around A, 80 of label 1 around B (80/20). Synthetic: label 0 is half
    around A and half around an off-distribution C, label 1 is 300 rows around B (50/50)."""
    gen = torch.Generator().manual_seed(1)
    centre = {k: torch.zeros(8) for k in "ABC"}
    centre["B"][0], centre["C"][1] = 3.0, 3.0
    groups = {"syn": [("A", 0, 150), ("C", 0, 150), ("B", 1, 300)], "real": [("A", 0, 320), ("B", 1, 80)]}
    out = {}
    for name, parts in groups.items():
        x = torch.cat([centre[c] + 0.5 * torch.randn(n, 8, generator=gen) for c, _, n in parts])
        rows = [{"text": f"{name} {c} {i}", "label": y, "part": c} for c, y, n in parts for i in range(n)]
        np.save(tmp_path / f"{name}.npy", x.numpy())
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        out[name] = rows
    dm = EmbeddingDataModule(str(tmp_path / "syn.jsonl"), str(tmp_path / "real.jsonl"), batch_syn=200, batch_real=200,
                             synthetic_embeddings=str(tmp_path / "syn.npy"), real_embeddings=str(tmp_path / "real.npy"))
    return out, dm


def fit_and_resample(dm, root, **kwargs):
    model = MMDWeightModule(backbone="toy", hidden=16, lr=0.05, num_resample=1001, replace=True, **kwargs)
    trainer(root, max_steps=120, enable_checkpointing=False).fit(model, datamodule=dm)
    writer = JsonlPredictionWriter(output_path=str(root / "weights.jsonl"), preview=0)
    trainer(root, callbacks=[writer]).predict(model, datamodule=dm, return_predictions=False)
    weights = [json.loads(line) for line in (root / "weights.jsonl").read_text().splitlines()]
    resampled = [json.loads(line) for line in (root / "resampled.jsonl").read_text().splitlines()]
    return weights, resampled


def test_label_aware_weights_keep_the_synthetic_label_proportions_and_align_within_each_label(shifted, tmp_path):
    rows, dm = shifted
    weights, resampled = fit_and_resample(dm, tmp_path / "aware")
    mass = {part: sum(w["weight"] for w in weights if w["part"] == part) for part in "ABC"}
    # label 1 keeps its synthetic share (0.5) exactly, although the real rows are 80/20
    assert mass["B"] == pytest.approx(0.5, abs=1e-5) and mass["A"] + mass["C"] == pytest.approx(0.5, abs=1e-5)
    assert mass["A"] > 0.8 * 0.5  # within label 0 the weights move to the rows that look like real label-0 rows
    labels = [r["label"] for r in resampled]
    assert len(labels) == 1001 and abs(sum(labels) - 1001 * 0.5) <= 0.5  # 500 or 501 rows of label 1
    assert sum(r["part"] == "C" for r in resampled) < 0.2 * labels.count(0)
    assert resampled[0]["params"]["label_mode"] == "per_label" and resampled[0]["params"]["stratify_label"]


def test_label_blind_weights_shift_the_label_balance(shifted, tmp_path):
    rows, dm = shifted
    weights, resampled = fit_and_resample(dm, tmp_path / "blind", label_mode="blind")
    mass_b = sum(w["weight"] for w in weights if w["label"] == 1)
    # the blind weights follow the real 80/20 label split instead of the synthetic 50/50
    assert mass_b < 0.35 and sum(r["label"] for r in resampled) < 0.4 * 1001


@pytest.mark.parametrize("change, message", [
    ({"real": [{"text": "r", "label": 0}]}, "synthetic label(s) 1 have no real rows"),
    ({"syn": [{"text": "s"}]}, "synthetic row 0 has none"),
])
def test_label_aware_weights_need_labels_on_both_sides(change, message):
    from synthtune.lightning_modules.mmd_weight import label_ids

    syn = change.get("syn", [{"text": "s", "label": 0}, {"text": "t", "label": 1}])
    real = change.get("real", [{"text": "r", "label": 0}, {"text": "q", "label": 1}])
    with pytest.raises(SynthtuneError, match=re.escape(message)) as info:
        label_ids(tuple(syn), tuple(real))
    assert "label_mode blind" in str(info.value) and "\n" not in str(info.value)


def test_nan_weights_stop_training_with_one_line(toy):
    model = MMDWeightModule(backbone="toy", hidden=8)
    model.build(8)
    model.bandwidths = [1.0]
    with torch.no_grad():
        model.net.out.bias.fill_(float("nan"))
    model.syn_labels, model.real_labels = toy["comp"], torch.zeros(400, dtype=torch.long)
    with pytest.raises(SynthtuneError, match="sample weights") as info:
        model.training_step({"syn": toy["syn"][:10], "real": toy["real"][:10], "index": torch.arange(10),
                             "real_index": torch.arange(10)}, 0)
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
