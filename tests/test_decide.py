"""The decision statistics (benchmark.decide) against closed forms, a published worked example and simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.decide import Design, Verdict, adjust, compare_paired, holm, location, meta_analysis
from benchmark.decide.margins import check, default_margin, margin_for, merged, parse
from benchmark.decide.paired import ALPHA, paired_tests, seeds_needed, sequential_p_values
from benchmark.config import ConfigError
from benchmark.scales import DIFFERENCE, PROPORTION, RATIO


def t2_cdf(t: float) -> float:
    """Student's t with 2 degrees of freedom, in closed form."""
    return 0.5 + t / (2 * math.sqrt(t * t + 2))


def t2_quantile(q: float) -> float:
    return (2 * q - 1) / math.sqrt(2 * q * (1 - q))


# ----------------------------------------------------------------------------- closed forms


def test_tost_and_difference_test_match_the_closed_form_with_two_degrees_of_freedom():
    # accuracies of A and B on three seeds: differences +1, +2, +3 points; margin 5 points
    a = {0: 0.81, 1: 0.82, 2: 0.83}
    b = {0: 0.80, 1: 0.80, 2: 0.80}
    d = compare_paired(a, b, PROPORTION, 0.05, higher_is_better=True, names=("a", "b"))
    se = 0.01 / math.sqrt(3)  # sd of (1, 2, 3) points is 1 point
    assert d.p_difference == pytest.approx(2 * (1 - t2_cdf(0.02 / se)))
    p_below = 1 - t2_cdf((0.02 + 0.05) / se)  # H0: difference <= -5 points
    p_above = t2_cdf((0.02 - 0.05) / se)  # H0: difference >= +5 points
    assert d.p_equivalence == pytest.approx(max(p_below, p_above))
    assert d.p_equivalence < ALPHA and d.verdict is Verdict.EQUIVALENT and d.reason.startswith("equivalent within ±5 points")
    half = t2_quantile(0.975) * se
    assert (d.ci_low, d.ci_high) == pytest.approx((0.02 - half, 0.02 + half))
    # with a 1-point margin neither test decides: t = 2 sqrt 3, p = 1 - t / sqrt(t^2 + 2) = 0.074
    d1 = compare_paired(a, b, PROPORTION, 0.01, higher_is_better=True, names=("a", "b"))
    assert d1.p_difference == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14))
    assert d1.verdict is Verdict.UNDECIDED and "seeds would likely decide it" in d1.reason
    assert "the interval holds both no difference and differences beyond ±1 point" in d1.reason  # [-0.48, +4.48] points
    # differences 2, 2.5, 3 points: t = 2.5 / (0.5 / sqrt 3), p = 0.013 < alpha: a is better
    tighter = {0: 0.82, 1: 0.825, 2: 0.83}
    d2 = compare_paired(tighter, b, PROPORTION, 0.01, higher_is_better=True, names=("a", "b"))
    assert d2.p_difference == pytest.approx(2 * (1 - t2_cdf(0.025 / (0.005 / math.sqrt(3)))))
    assert d2.verdict is Verdict.A_BETTER and d2.reason.startswith("a better: +2.5 points")
    # lower is better flips who wins
    assert compare_paired(tighter, b, PROPORTION, 0.01, higher_is_better=False).verdict is Verdict.B_BETTER


def test_differences_without_spread_use_the_exact_sign_flip_test():
    """Equal differences leave the t statistic undefined: p is the sign-flip test's, 2^-(n-1) two-sided and
    2^-n for TOST, counted here by enumerating all 2^n sign patterns; never 0 as a t-test on zero spread gives."""
    import itertools

    for n in range(2, 8):
        d, bound = -1 / 180, 0.01  # one test clip of 180 on every seed, inside a 1-point margin
        flips = np.array(list(itertools.product([1, -1], repeat=n)))
        p_two = np.mean(np.abs((flips * d).mean(1)) >= abs(d) - 1e-15)
        p_tost = np.mean((flips * (d - bound)).mean(1) <= (d - bound) + 1e-15)  # H0 mean >= bound, shifted
        p_diff, p_equiv = paired_tests(np.full(n, d), bound)
        assert p_diff == pytest.approx(p_two) == 2.0 ** -(n - 1)
        assert p_equiv == pytest.approx(p_tost) == 2.0**-n
        assert paired_tests(np.zeros(n), bound) == (1.0, 2.0**-n)  # no difference at all: never "better"
        assert paired_tests(np.full(n, 0.02), bound)[1] == 1.0  # outside the margin: never equivalent

    # accuracies k/180 logged as float32, whose differences are equal up to that rounding, have no spread
    a = {s: float(np.float32(k / 180)) for s, k in enumerate((170, 169, 171))}
    b = {s: float(np.float32(k / 180)) for s, k in enumerate((171, 170, 172))}
    assert np.ptp([a[s] - b[s] for s in a]) > 0  # not equal as floats
    three = compare_paired(a, b, PROPORTION, 0.01, higher_is_better=True)
    assert three.verdict is Verdict.UNDECIDED and three.p_equivalence_raw == 0.125 and three.p_difference_raw == 0.25
    assert "no spread" in three.reason and three.seeds_needed == 5  # 2^-5 <= 0.05 < 2^-4
    more = {3: (150, 151), 4: (160, 161)}
    five = compare_paired({**a, **{s: float(np.float32(k / 180)) for s, (k, _) in more.items()}},
                          {**b, **{s: float(np.float32(k / 180)) for s, (_, k) in more.items()}}, PROPORTION, 0.01, higher_is_better=True)
    assert five.verdict is Verdict.EQUIVALENT and five.p_equivalence_raw == 2.0**-5
    assert seeds_needed(0.5, 0.0, 0.0, 0.05) == 6 and seeds_needed(0.0, 0.0, 0.0, 0.05) is None


def test_log_ratio_interval_matches_the_closed_form():
    # per-seed ratios 2, 4, 2: log ratios (1, 2, 1) ln 2, mean 4/3 ln 2, sd ln 2 / sqrt 3
    a, b = {0: 2.0, 1: 8.0, 2: 4.0}, {0: 1.0, 1: 2.0, 2: 2.0}
    d = compare_paired(a, b, RATIO, 0.10, higher_is_better=False)
    t = t2_quantile(0.975)
    assert d.estimate == pytest.approx(2 ** (4 / 3))  # ratio of geometric means
    assert (d.ci_low, d.ci_high) == pytest.approx((2 ** ((4 - t) / 3), 2 ** ((4 + t) / 3)))
    assert d.p_difference == pytest.approx(2 * (1 - t2_cdf((4 / 3) / (1 / 3))))  # t = mean / (sd / sqrt 3) = 4
    assert d.verdict is Verdict.UNDECIDED and d.seeds_needed is not None and d.seeds_needed > 3


def test_holm_step_down():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04); NaN stays NaN
    adjusted = holm([0.01, 0.04, 0.03, math.nan])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])


def test_adjust_applies_holm_within_a_family():
    pairs = [({0: 1.0, 1: 1.1, 2: 1.2}, {0: 2.0, 1: 2.3, 2: 2.3}), ({0: 1.0, 1: 1.2, 2: 1.1}, {0: 1.5, 1: 1.7, 2: 1.6})]
    raw = [compare_paired(a, b, RATIO, 0.1, higher_is_better=False) for a, b in pairs]
    family = adjust(raw)
    assert [f.p_difference for f in family] == pytest.approx(holm([r.p_difference_raw for r in raw]))
    assert all(f.family == 2 for f in family) and "Holm over 2" in family[0].reason


def test_seeds_needed_matches_power_tables_and_simulation():
    # G*Power 3.1, paired t-test, two-sided alpha 0.05, power 0.80: dz 0.5 -> 34, 0.8 -> 15, 0.2 -> 199
    assert [seeds_needed(d, 1.0, 0.0, 0.05) for d in (0.5, 0.8, 0.2)] == [34, 15, 199]
    # and, independently of the noncentral t: simulated power at 34 pairs is about 0.80
    rng = np.random.default_rng(1)
    p, _ = paired_tests(rng.normal(0.5, 1.0, (20_000, 34)), 0.0)
    assert abs((p <= 0.05).mean() - 0.80) < 0.02
    # equivalence route: no difference, margin one sd: n where TOST has 80 % power
    n = seeds_needed(0.0, 1.0, 1.0, 0.05)
    _, pe = paired_tests(rng.normal(0.0, 1.0, (20_000, n)), 1.0)
    assert (pe <= 0.05).mean() >= 0.78
    assert seeds_needed(0.0, 1.0, 0.0, 0.05) is None  # no difference and no margin: nothing can decide


# ----------------------------------------------------------------------------- the meta-analysis

# BCG vaccine trials (Colditz et al. 1994; metafor's dat.bcg): TB cases and non-cases, vaccinated then control
BCG = [(4, 119, 11, 128), (6, 300, 29, 274), (3, 228, 11, 209), (62, 13536, 248, 12619), (33, 5036, 47, 5761),
       (180, 1361, 372, 1079), (8, 2537, 10, 619), (505, 87886, 499, 87892), (29, 7470, 45, 7232),
       (17, 1699, 65, 1600), (186, 50448, 141, 27197), (5, 2493, 3, 2338), (27, 16886, 29, 17825)]  # fmt: skip


def test_dersimonian_laird_reproduces_the_published_bcg_example():
    """metafor's documented output for rma(yi, vi, data=dat.bcg (log risk ratios), method="DL"):
    estimate -0.7141, se 0.1787, CI [-1.0644, -0.3638], tau^2 0.3088, Q 152.2330, I^2 92.12 %."""
    y = [math.log((a / (a + b)) / (c / (c + d))) for a, b, c, d in BCG]
    v = [1 / a - 1 / (a + b) + 1 / c - 1 / (c + d) for a, b, c, d in BCG]
    m = meta_analysis(y, v)
    assert (m.k, round(m.estimate, 4), round(m.se, 4), round(m.tau2, 4)) == (13, -0.7141, 0.1787, 0.3088)
    assert (round(m.ci_low, 4), round(m.ci_high, 4), round(m.q, 4), round(100 * m.i2, 2)) == (-1.0644, -0.3638, 152.233, 92.12)


def test_dersimonian_laird_by_hand_and_without_heterogeneity():
    y, v = [0.0, 1.0, 3.0], [1.0, 1.0, 2.0]
    w = [1, 1, 0.5]
    fixed = (0 + 1 + 1.5) / 2.5  # 1.0
    q = 1 * 1 + 0 + 0.5 * 4  # 3.0
    tau2 = (q - 2) / (2.5 - (1 + 1 + 0.25) / 2.5)  # 1 / 1.6
    ws = [1 / (vi + tau2) for vi in v]
    mu = sum(wi * yi for wi, yi in zip(ws, y)) / sum(ws)
    m = meta_analysis(y, v)
    assert fixed == 1.0 and (m.q, m.tau2) == pytest.approx((q, tau2)) and m.estimate == pytest.approx(mu)
    assert m.se == pytest.approx(1 / math.sqrt(sum(ws)))
    same = meta_analysis([0.5, 0.5, 0.5], [1.0, 2.0, 4.0])  # no spread between studies: tau^2 = 0, fixed effect
    assert (same.tau2, same.i2, same.estimate) == (0.0, 0.0, pytest.approx(0.5))
    assert same.se == pytest.approx(1 / math.sqrt(1 + 0.5 + 0.25)) and sum(w) == 2.5


# ----------------------------------------------------------------------------- ranges


@pytest.mark.parametrize("method", ["t", "bootstrap"])
def test_intervals_never_leave_the_metric_range(method):
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(2, 9))
        errors = np.exp(rng.normal(-6, 3, n))  # positive, spread over orders of magnitude
        spot = location(errors, RATIO, method)
        assert 0 < spot.low <= spot.center <= spot.high, (errors, spot)
        accuracies = np.clip(rng.beta(0.3, 0.05, n), 0, 1).round(3)  # piled up near 1, often exactly 1
        acc = location(accuracies, PROPORTION, method)
        assert 0 <= acc.low <= acc.center <= acc.high <= 1, (accuracies, acc)
        other = rng.beta(0.3, 0.05, n).round(3)
        diff = compare_paired(dict(enumerate(accuracies)), dict(enumerate(other)), PROPORTION, 0.01, higher_is_better=True)
        assert -1 <= diff.ci_low <= diff.ci_high <= 1
        ratio = compare_paired(dict(enumerate(errors)), dict(enumerate(errors[::-1])), RATIO, 0.1, higher_is_better=False)
        assert 0 < ratio.ci_low <= ratio.ci_high
    assert location([0.1] * 4 + [0.2], RATIO, method).method == ("bootstrap" if method == "bootstrap" else "t")
    assert location([0.1, 0.2], RATIO, method).method == "t"  # bootstrap needs 5 seeds


# ----------------------------------------------------------------------------- the sequential design


def test_doubling_design():
    d = Design.doubling(3, 10)
    assert d.looks == (3, 6, 10) and d.weights == pytest.approx((0.09, 0.27, 0.64))
    assert Design.doubling(2, 10).looks == (3, 6, 10)  # the first look needs 3 seeds
    assert Design.doubling(4, 4).looks == (4,) and Design.doubling(4, 4).weights == (1.0,)
    assert Design.from_json(d.to_json()) == d and not Design.from_json(None).sequential
    assert d.next_look(0) == 3 and d.next_look(6) == 10 and d.next_look(10) is None
    assert d.reached(7) == [(3, 0.09), (6, 0.27)]


MC = 4000  # simulated comparisons: Monte-Carlo s.e. of a 5 % rate is 0.34 %


def _stop(x: np.ndarray, design: Design, bound: float, which: int) -> tuple[np.ndarray, np.ndarray]:
    """Per simulated comparison: decided (p <= alpha at some look) and the seeds it took to stop."""
    decided = np.zeros(len(x), bool)
    seeds = np.full(len(x), design.looks[-1])
    for n in design.looks:
        p = sequential_p_values(x[:, :n], design, bound)[which]
        newly = (p <= ALPHA) & ~decided
        seeds[newly] = n
        decided |= newly
    return decided, seeds


def test_sequential_design_keeps_false_positives_within_alpha_and_stops_early_on_real_effects():
    rng = np.random.default_rng(2026)
    design = Design.doubling(3, 12)
    tolerance = 3 * math.sqrt(ALPHA * (1 - ALPHA) / MC)
    null = rng.standard_normal((MC, 12))
    decided, _ = _stop(null, design, 0.0, 0)
    assert decided.mean() <= ALPHA + tolerance
    # peeking at every look with the full alpha would not: the test above can fail
    naive = np.zeros(MC, bool)
    for n in design.looks:
        naive |= paired_tests(null[:, :n], 0.0)[0] <= ALPHA
    assert naive.mean() > ALPHA + tolerance
    # equivalence claimed for a true difference exactly at the margin (0.5 sd): at most alpha of the time
    at_margin = rng.standard_normal((MC, 12)) + 0.5
    decided, _ = _stop(at_margin, design, 0.5, 1)
    assert decided.mean() <= ALPHA + tolerance
    # a real effect (1.5 sd) is decided, mostly well before the last look
    effect = rng.standard_normal((MC, 12)) + 1.5
    decided, seeds = _stop(effect, design, 0.0, 0)
    assert decided.mean() > 0.95 and seeds.mean() < 12 - 2  # the fixed-sample plan would always take 12


def test_holm_over_sequential_p_values_controls_the_family_error():
    rng = np.random.default_rng(7)
    design = Design.doubling(3, 10)
    x = rng.standard_normal((MC, 3, 10))  # families of three comparisons, all null
    p = sequential_p_values(x, design, 0.0)[0]
    any_false = [min(holm(list(row))) <= ALPHA for row in p]
    assert np.mean(any_false) <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / MC)


def test_a_sequential_decision_uses_the_looks_it_reached():
    design = Design.doubling(3, 10)
    a = {s: 1.0 + 0.01 * s for s in range(5)}
    b = {s: 2.0 + 0.01 * s for s in range(5)}
    d = compare_paired(a, b, RATIO, 0.1, higher_is_better=False, design=design, names=("gru", "lstm"))
    assert d.looks == 1 and d.verdict is Verdict.A_BETTER and "look 1 of 3" in d.reason
    # log ratios 0.1, 0.2, 0.3, 0.2: the fixed-sample test rejects (p = 0.016), the first look's 11 % of alpha does not
    logs = [0.1, 0.2, 0.3, 0.2]
    a, b = {s: math.exp(x) for s, x in enumerate(logs)}, {s: 1.0 for s in range(4)}
    fixed = compare_paired(a, b, RATIO, 0.0, higher_is_better=False)
    looked = compare_paired(a, b, RATIO, 0.0, higher_is_better=False, design=Design.doubling(4, 12))
    assert fixed.verdict is Verdict.B_BETTER and fixed.p_difference == pytest.approx(0.016, abs=0.001)
    assert looked.verdict is Verdict.UNDECIDED and looked.p_difference == pytest.approx(fixed.p_difference / (16 / 144))
    assert "the interval excludes no difference, but not at the stricter level of the look's share of alpha" in looked.reason
    early = compare_paired({0: 1.0, 1: 1.1}, {0: 2.0, 1: 2.1}, RATIO, 0.1, higher_is_better=False, design=design)
    assert early.verdict is Verdict.UNDECIDED and "below the design's first look at 3" in early.reason and early.seeds_needed == 3


# ----------------------------------------------------------------------------- margins


def test_margins_defaults_precedence_and_checks():
    assert default_margin("mse", RATIO) == 0.10 and default_margin("accuracy", PROPORTION) == 0.01
    assert default_margin("throughput_seq_per_s", RATIO) == 0.05 and default_margin("r2", DIFFERENCE) is None
    margins = {"mse": 0.2, "copy_memory": {"cross_entropy": 0.15}}
    assert margin_for(margins, "adding", "mse", RATIO) == 0.2
    assert margin_for(margins, "copy_memory", "cross_entropy", RATIO) == 0.15
    assert margin_for(margins, "copy_memory", "recall_accuracy", PROPORTION) == 0.01
    assert parse(["mse=0.3", "copy_memory.cross_entropy=0.2"]) == {"mse": 0.3, "copy_memory": {"cross_entropy": 0.2}}
    assert merged(margins, {"copy_memory": {"recall_accuracy": 0.02}}) == {
        "mse": 0.2, "copy_memory": {"cross_entropy": 0.15, "recall_accuracy": 0.02}}  # fmt: skip
    metrics = {"adding": {"mse"}, "copy_memory": {"cross_entropy", "recall_accuracy"}}
    check(margins, metrics)
    for bad, message in [
        ({"mse": -0.1}, "report.margins.mse: a margin cannot be negative"),
        ({"accuracy": 0.01}, "report.margins.accuracy: no task here has a metric 'accuracy'"),
        ({"adding": {"cross_entropy": 0.1}}, "report.margins.adding.cross_entropy: task 'adding' has no metric 'cross_entropy'"),
        ({"anbn": {"accuracy": 0.1}}, "report.margins.anbn: no task 'anbn' here"),
        ({"mse": "big"}, "report.margins.mse: a margin is a number"),
    ]:
        with pytest.raises(ConfigError, match=message):
            check(bad, metrics)
    with pytest.raises(ConfigError, match="expected"):
        parse(["mse"])
