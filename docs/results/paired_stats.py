"""Paired statistics behind the comparisons of two results pages (issue 27), from the committed numbers.

    python docs/results/paired_stats.py

Pages: docs/results/dawgen_prompt_tuning.md (seeds 13, 21, 42; 300 test rows) and docs/results/synalign.md
(seeds 0, 1, 2). Neither run's per-seed result files (runs/results-dawgen-pt, runs/results-synalign) are in
the repository, so the inputs below are copied from the pages: per-seed test accuracies where the page prints
them, mean ± std over the three seeds (sample std, ddof=1, as report.py writes it) otherwise. No rerun.

Three kinds of statement:

* **paired** (per-seed values known): the mean of the per-seed differences, its 95 % t-interval over the
  3 seeds (df = 2, t = 4.303) and the two-sided paired t-test (scipy.stats.ttest_rel). A sign test is no use
  here: with 3 seeds its smallest two-sided p is 2 × 0.5³ = 0.25.
* **bounds** (only mean ± std known): the mean difference is fixed, but the std of the per-seed differences
  is not; it lies between |s1 − s2| and s1 + s2 whatever the pairing (Cauchy–Schwarz on the sample
  covariance). So the paired p can only be bracketed, and we print the range (with the ±0.05 rounding of the
  printed means and stds), the unpaired Welch p for reference, and the seed-to-seed correlation the two rows
  would need for the paired test to reach p < 0.05.
* **proportions**: the on-label rates of two generators' 512 samples each (independent samples, one fixed
  judge): Fisher's exact test on the counts.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

N_SEEDS = 3
T = float(stats.t.ppf(0.975, N_SEEDS - 1))  # 4.303
ROUND = 0.05  # the pages print one decimal

# ---------------------------------------------------------------------------------------------------------
# dawgen_prompt_tuning.md, SST-2, test accuracy (%) on 300 rows, seeds 13 / 21 / 42 (the per-seed values the
# page prints in its follow-up section).
DAWGEN_SEEDS = (13, 21, 42)
REAL_ONLY = (78.0, 84.0, 72.0)                    # "78.0 ... 84.0 ... 72.0" (real only, in the follow-up)
SYN_LEARNED = (65.3, 75.7, 71.7)                  # synthetic only, learned-weight data
SYN_EOS = (71.7, 77.3, 74.7)                      # synthetic only, EOS weight pinned
PAIRED_GS_EOS = (75.0, 71.0, 74.3)                # paired + GS, EOS-pinned data
GS_GAIN_EOS = (6.7, 4.0, 7.3)                     # paired + GS minus paired no GS, EOS-pinned data
PAIRED_NOGS_EOS = tuple(round(a - d, 1) for a, d in zip(PAIRED_GS_EOS, GS_GAIN_EOS))  # 68.3, 67.0, 67.0

# The page's accuracy table (mean ± std), to check the per-seed values against.
DAWGEN_TABLE = {
    "real only": (78.0, 6.0),
    "synthetic only (learned)": (70.9, 5.2),
    "synthetic only (eos)": (74.6, 2.8),
    "paired + GS (eos)": (73.4, 2.1),
    "paired, no GS (eos)": (67.4, 0.8),
    "real+syn": (73.7, 3.8),
    "paired, no GS": (74.9, 5.6),
    "paired + GS": (74.8, 5.7),
    "paired + GS (uniform)": (77.1, 3.6),
    "FT (full model)": (85.0, 1.7),
}
DAWGEN_PER_SEED = {
    "real only": REAL_ONLY,
    "synthetic only (learned)": SYN_LEARNED,
    "synthetic only (eos)": SYN_EOS,
    "paired + GS (eos)": PAIRED_GS_EOS,
    "paired, no GS (eos)": PAIRED_NOGS_EOS,
}

# Generators: share of 512 samples the supervised judge rates on-label (SST-2).
JUDGE = {"learned": 0.730, "uniform": 0.701, "eos pinned": 0.764}
N_SAMPLES = 512

# ---------------------------------------------------------------------------------------------------------
# synalign.md, logistic regression on MiniLM, test accuracy (%), mean ± std over seeds 0, 1, 2.
SYNALIGN = {  # (SST-2, AG News, Amazon)
    "real only": ((64.4, 0.7), (71.2, 6.1), (28.8, 0.9)),
    "synthetic only (unweighted)": ((61.9, 7.6), (61.0, 3.4), (26.7, 1.6)),
    "real + synthetic (unweighted)": ((65.0, 4.6), (67.1, 2.5), (28.9, 0.5)),
    "synthetic only (MMD)": ((62.4, 5.9), (62.7, 1.6), (24.8, 2.8)),
    "real + synthetic (MMD)": ((64.1, 3.7), (67.1, 3.2), (27.9, 0.9)),
    "real + synthetic (random control)": ((59.9, 4.3), (66.2, 4.4), (28.4, 2.6)),
}
SYNALIGN_TASKS = ("SST-2", "AG News", "Amazon")
# MMD² (×100) to the test split, mean ± std over seeds: (before = all synthetic rows, after = MMD-resampled).
MMD_TO_TEST = {"SST-2": ((2.08, 0.52), (2.55, 0.32)), "AG News": ((2.18, 0.25), (2.76, 0.13)),
               "Amazon": ((2.07, 0.34), (2.21, 0.32))}
SYNALIGN_TEST_ROWS = (821, 2000, 2000)


# ---------------------------------------------------------------------------------------------------------
def paired(name: str, a: tuple[float, ...], b: tuple[float, ...]) -> None:
    """a − b per seed: mean, 95 % t-interval, paired t-test p, and how many seeds favour a."""
    d = np.subtract(a, b)
    mean, sd = d.mean(), d.std(ddof=1)
    half = T * sd / math.sqrt(len(d))
    p = stats.ttest_rel(a, b).pvalue
    wins = int((d > 0).sum())
    sign_p = stats.binomtest(max(wins, len(d) - wins), len(d), 0.5).pvalue
    verdict = "interval excludes 0" if (mean - half) * (mean + half) > 0 else "not distinguishable at 3 seeds"
    print(f"  {name}: per seed {', '.join(f'{x:+.1f}' for x in d)}; mean {mean:+.2f}, "
          f"95% CI [{mean - half:+.2f}, {mean + half:+.2f}], paired t p = {p:.3f} "
          f"(sign test p = {sign_p:.2f}, {wins}/{len(d)} seeds higher) -> {verdict}")


def bounds(name: str, m1: float, s1: float, m2: float, s2: float, n: int = N_SEEDS,
           rounding: float = ROUND) -> None:
    """Row 1 − row 2 from mean ± std only: the range of the paired p over every pairing of the seeds."""
    diff = m1 - m2
    lo_abs, hi_abs = max(abs(diff) - 2 * rounding, 0.0), abs(diff) + 2 * rounding
    sd_min = max(abs(s1 - s2) - 2 * rounding, 1e-9)
    sd_max = s1 + s2 + 2 * rounding

    def p_of(abs_mean: float, sd: float) -> float:
        return float(2 * stats.t.sf(abs_mean / (sd / math.sqrt(n)), n - 1))

    p_min, p_max = p_of(hi_abs, sd_min), p_of(lo_abs, sd_max)
    half_min, half_max = T * abs(s1 - s2) / math.sqrt(n), T * (s1 + s2) / math.sqrt(n)
    welch = stats.ttest_ind_from_stats(m1, s1, n, m2, s2, n, equal_var=False).pvalue
    # correlation rho the seeds would need for |t| > T: s_d^2 = s1^2 + s2^2 - 2 rho s1 s2 < (|diff| sqrt(n) / T)^2
    need = (s1 ** 2 + s2 ** 2 - (abs(diff) * math.sqrt(n) / T) ** 2) / (2 * s1 * s2) if s1 and s2 else float("nan")
    need_txt = "impossible (rho > 1)" if need > 1 else f"rho > {need:.3f}" if need > 0.99 else f"rho > {need:.2f}"
    print(f"  {name}: mean diff {diff:+.2f}; 95% CI half-width between {half_min:.2f} and {half_max:.2f}; "
          f"paired p between {p_min:.3f} and {p_max:.3f} over all pairings; Welch p = {welch:.2f}; "
          f"p < 0.05 needs {need_txt}")


def se_points(p: float, n: int) -> float:
    return 100 * math.sqrt(p * (1 - p) / n)


def main() -> None:
    print(f"t(0.975, df=2) = {T:.3f}; smallest two-sided sign-test p with 3 seeds = {2 * 0.5 ** 3:.2f}\n")

    print("Noise floors (one binomial standard error, points)")
    print(f"  dawgen dev, 32 rows at 70 %: {se_points(0.70, 32):.1f}; test, 300 rows at 70 %: "
          f"{se_points(0.70, 300):.1f} (at 50 %: {se_points(0.5, 300):.1f}, at 85 %: {se_points(0.85, 300):.1f})")
    print(f"  synalign test at 64 % / 67 % / 28 %: " + ", ".join(
        f"{t} {se_points(p, n):.1f}" for t, p, n in zip(SYNALIGN_TASKS, (0.64, 0.67, 0.28), SYNALIGN_TEST_ROWS)))
    print(f"  synalign prompt-tuning run, 200 rows at 80 %: {se_points(0.80, 200):.1f}\n")

    print("Check: per-seed values against the dawgen page's table (mean ± std)")
    for row, values in DAWGEN_PER_SEED.items():
        mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
        tm, ts = DAWGEN_TABLE[row]
        ok = abs(mean - tm) <= 0.051 and abs(std - ts) <= 0.051
        print(f"  {row}: {', '.join(f'{v:.1f}' for v in values)} -> {mean:.1f} ± {std:.1f} "
              f"(table {tm} ± {ts}) {'ok' if ok else 'MISMATCH'}")
    print()

    print("dawgen_prompt_tuning.md, SST-2, paired over seeds 13 / 21 / 42 (points of test accuracy)")
    paired("synthetic only, eos-pinned - learned-weight data", SYN_EOS, SYN_LEARNED)
    paired("paired + GS - paired no GS, eos-pinned data", PAIRED_GS_EOS, PAIRED_NOGS_EOS)
    paired("paired + GS (eos) - real only", PAIRED_GS_EOS, REAL_ONLY)
    # The same with the exact test counts (each accuracy is k/300; one decimal identifies k uniquely).
    k300 = lambda v: tuple(round(x * 3) / 3 for x in v)  # noqa: E731
    print("  (same, from the exact k/300 accuracies)")
    paired("synthetic only, eos - learned [k/300]", k300(SYN_EOS), k300(SYN_LEARNED))
    paired("paired + GS - no GS, eos [k/300]", k300(PAIRED_GS_EOS), k300(PAIRED_NOGS_EOS))
    print()

    print("dawgen_prompt_tuning.md, SST-2, mean ± std only (per-seed values not committed)")
    t = DAWGEN_TABLE
    for a, b in [("paired + GS (uniform)", "paired + GS"), ("FT (full model)", "real only"),
                 ("real only", "real+syn"), ("real only", "paired, no GS"), ("real only", "paired + GS"),
                 ("paired + GS", "paired, no GS")]:
        bounds(f"{a} - {b}", *t[a], *t[b])
    print()

    print("dawgen_prompt_tuning.md, supervised judge on-label rate (512 samples each, Fisher exact)")
    for a, b in [("eos pinned", "learned"), ("learned", "uniform"), ("eos pinned", "uniform")]:
        ka, kb = round(JUDGE[a] * N_SAMPLES), round(JUDGE[b] * N_SAMPLES)
        p = stats.fisher_exact([[ka, N_SAMPLES - ka], [kb, N_SAMPLES - kb]]).pvalue
        print(f"  {a} {ka}/512 vs {b} {kb}/512: difference {100 * (JUDGE[a] - JUDGE[b]):+.1f} points "
              f"(table rates), Fisher p = {p:.2f}")
    print()

    print("synalign.md, logistic regression, mean ± std only (per-seed values not committed)")
    s = SYNALIGN
    for a, b in [("real + synthetic (MMD)", "real + synthetic (random control)"),
                 ("real + synthetic (MMD)", "real + synthetic (unweighted)"),
                 ("real + synthetic (unweighted)", "real only"),
                 ("real + synthetic (MMD)", "real only"),
                 ("synthetic only (unweighted)", "real only"),
                 ("synthetic only (MMD)", "real only")]:
        for i, task in enumerate(SYNALIGN_TASKS):
            bounds(f"{task}: {a} - {b}", *s[a][i], *s[b][i])
    print()

    print("synalign.md, MMD² (x100) to the test split, after resampling - before (mean ± std only)")
    for task, (before, after) in MMD_TO_TEST.items():
        bounds(f"{task}: after - before", *after, *before, rounding=0.005)
    print()

    # The single soft-prompt run (SST-2, seed 0, 200 test rows): MMD mix 83.0 vs random control 80.5.
    print("synalign.md, soft-prompt run (one seed, 200 rows): 83.0 vs 80.5 = +2.5 points; one binomial SE of "
          f"each is {se_points(0.83, 200):.1f} / {se_points(0.805, 200):.1f} points")


if __name__ == "__main__":
    main()
