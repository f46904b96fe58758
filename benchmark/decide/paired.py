"""Two models compared seed by seed: the effect with its interval, and a three-way verdict.

The seed fixes a run's initialisation and data order, so two models that ran the same seeds are
compared by the per-seed differences on the metric's scale (``benchmark.scales``): log(a) - log(b)
for a ratio scale, a - b otherwise. On those n differences (mean m, standard deviation s):

- *difference*: the paired t-test of mean 0 (two-sided);
- *equivalence* within the margin (bound L on the comparison scale, log(1 + margin) for ratios):
  two one-sided t-tests (TOST) of mean <= -L and of mean >= L; p = the larger of the two;
- under a sequential design (``benchmark.decide.design``) each p is the smallest p_k / w_k over
  the looks reached; within a family of comparisons, Holm's step-down adjustment of each kind.

Differences with no spread (every seed's the same, e.g. one test clip apart on an accuracy) leave
the t statistic undefined; there the exact sign-flip test takes its place: two-sided p = 2^-(n-1)
for a nonzero difference, TOST p = 2^-n inside the margin, the smallest p that n seeds can give
without assuming a distribution (3 such seeds decide nothing at 0.05; 5 can).

Verdict: *equivalent* if the equivalence p <= alpha, else *A better* / *B better* if the
difference p <= alpha, else *undecided*, with an estimate of the paired seeds that would likely
decide it: the smallest n at which a fixed-sample test at level alpha / (family size) has 80 %
power (noncentral t), taking the observed mean difference and spread as the truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
from scipy import stats

from benchmark.decide.design import FIXED, Design
from benchmark.scales import Scale

ALPHA = 0.05
LEVEL = 1 - ALPHA  # two-sided intervals shown beside each verdict
POWER = 0.80  # of the seeds-needed estimate
MAX_SEEDS_ESTIMATE = 1000  # beyond this the estimate says "more than"
BOOTSTRAP_MIN_SEEDS = 5
BOOTSTRAP_RESAMPLES = 10_000
SPREAD_TOLERANCE = 1e-6  # differences this close count as equal: metrics are logged as float32 (relative error 6e-8)


def no_spread(sd, mean):
    """Do differences with this sd and mean have no spread (beyond float rounding of equal values)?"""
    return np.asarray(sd) <= SPREAD_TOLERANCE * np.maximum(1.0, np.abs(mean))


def is_zero(mean):
    """Is a mean difference zero, to the same float rounding as ``no_spread``?"""
    return np.abs(mean) <= SPREAD_TOLERANCE


class Verdict(str, Enum):
    A_BETTER = "a better"
    B_BETTER = "b better"
    EQUIVALENT = "equivalent"
    UNDECIDED = "undecided"


def paired_tests(x: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided p of mean 0 and TOST p of |mean| >= ``bound``, over the last axis of differences ``x``.

    Vectorised over the leading axes (the simulation tests use it on many comparisons at once).
    No spread: the exact sign-flip test (see the module doc).
    """
    x = np.asarray(x, dtype=float)
    n = x.shape[-1]
    mean, sd, df = x.mean(-1), x.std(-1, ddof=1), n - 1
    se = sd / math.sqrt(n)
    flat = no_spread(sd, mean)
    se = np.where(flat, np.nan, se)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_diff = 2 * stats.t.sf(np.abs(mean / se), df)
        if bound > 0:
            below = stats.t.sf((mean + bound) / se, df)  # H0: mean <= -bound
            above = stats.t.cdf((mean - bound) / se, df)  # H0: mean >= bound
            p_equiv = np.maximum(below, above)
        else:
            p_equiv = np.ones_like(mean)
    p_diff = np.where(flat, np.where(is_zero(mean), 1.0, 2.0 ** -(n - 1)), p_diff)
    p_equiv = np.where(flat, np.where(np.abs(mean) < bound, 2.0**-n, 1.0), p_equiv)
    return np.where(np.isnan(p_diff), 1.0, p_diff), np.where(np.isnan(p_equiv), 1.0, p_equiv)


def sequential_p_values(x: np.ndarray, design: Design, bound: float) -> tuple[np.ndarray, np.ndarray, int]:
    """(difference p, equivalence p, looks reached) for differences ``x`` in seed order under ``design``.

    Each p is the smallest p_k / w_k over the looks reached, where look k uses the first n_k seeds:
    by the union bound it is a valid p-value over the whole sequence of looks (see ``design``).
    """
    x = np.asarray(x, dtype=float)
    reached = design.reached(x.shape[-1])
    p_diff = np.ones(x.shape[:-1])
    p_equiv = np.ones(x.shape[:-1])
    for n, share in reached:
        if share <= 0:
            continue
        d, e = paired_tests(x[..., :n], bound)
        p_diff = np.minimum(p_diff, d / share)
        p_equiv = np.minimum(p_equiv, e / share)
    return np.minimum(p_diff, 1.0), np.minimum(p_equiv, 1.0), len(reached)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN): valid under any dependence between the tests."""
    order = sorted((i for i, p in enumerate(p_values) if not math.isnan(p)), key=lambda i: p_values[i])
    adjusted = [math.nan] * len(p_values)
    running, m = 0.0, len(order)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))  # adjusted p-values never decrease
        adjusted[i] = running
    return adjusted


def seeds_needed(mean: float, sd: float, bound: float, alpha: float, power: float = POWER) -> int | None:
    """Paired seeds at which a fixed-sample test at ``alpha`` would likely (``power``) decide, if the
    observed ``mean`` and ``sd`` of the differences were the truth: the fewer of the difference
    route (two-sided t-test) and, when |mean| < bound, the equivalence route (TOST, power bounded
    below by P(lower rejects) + P(upper rejects) - 1). None when neither route can decide.
    No spread: the seeds at which the exact sign-flip test's smallest p reaches ``alpha``."""
    if math.isnan(mean) or math.isnan(sd):
        return None
    if no_spread(sd, mean):
        routes = [1 + math.ceil(math.log2(1 / alpha))] if not is_zero(mean) else []
        routes += [math.ceil(math.log2(1 / alpha))] if bound > abs(mean) else []
        return max(2, min(routes)) if routes else None
    n = np.arange(2, MAX_SEEDS_ESTIMATE + 2)
    df, root = n - 1, np.sqrt(n)
    found = []
    if mean != 0:
        crit = stats.t.ppf(1 - alpha / 2, df)
        nc = abs(mean) * root / sd
        found.append(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if bound > abs(mean):
        crit = stats.t.ppf(1 - alpha, df)
        found.append(stats.nct.sf(crit, df, (mean + bound) * root / sd) + stats.nct.cdf(-crit, df, (mean - bound) * root / sd) - 1)
    hits = [n[np.argmax(p >= power)] for p in found if (p >= power).any()]
    if hits:
        return int(min(hits))
    return MAX_SEEDS_ESTIMATE + 1 if found else None


@dataclass(frozen=True)
class Decision:
    """One comparison of ``a`` with ``b``. ``estimate``: ratio of geometric means a/b (ratio scale) or
    mean difference a - b; ``ci_low``/``ci_high``: its 95 % t-interval over all ``n`` paired seeds.
    ``p_difference``/``p_equivalence`` are the p-values the verdict used (sequential, Holm-adjusted
    within ``family`` comparisons); ``*_raw`` before Holm."""

    a: str
    b: str
    scale: Scale
    higher_is_better: bool
    margin: float | None
    design: Design
    n: int
    looks: int
    mean: float  # on the comparison scale (log ratio, or difference)
    sd: float
    estimate: float
    ci_low: float
    ci_high: float
    p_difference_raw: float
    p_equivalence_raw: float
    p_difference: float
    p_equivalence: float
    family: int = 1
    alpha: float = ALPHA
    better: str = "better"  # the word for the winning side: "better", "faster", ...
    verdict: Verdict = Verdict.UNDECIDED
    reason: str = ""
    seeds_needed: int | None = None

    @property
    def decided(self) -> bool:
        return self.verdict is not Verdict.UNDECIDED

    @property
    def winner(self) -> str | None:
        return {Verdict.A_BETTER: self.a, Verdict.B_BETTER: self.b}.get(self.verdict)

    @property
    def bound(self) -> float:
        return self.scale.bound(self.margin)

    def effect_text(self) -> str:
        """``ratio 0.62 [0.55, 0.70]`` or ``+1.2 points [0.3, 2.1]``: the estimate and its 95 % interval."""
        if math.isnan(self.estimate):
            return "no estimate"
        ci = f" [{_g(self.ci_low)}, {_g(self.ci_high)}]" if not math.isnan(self.ci_low) else ""
        if self.scale.log:
            return f"ratio {_g(self.estimate)}{ci}"
        if self.scale.name == "proportion":
            ci = f" [{100 * self.ci_low:+.3g}, {100 * self.ci_high:+.3g}]" if not math.isnan(self.ci_low) else ""
            return f"{100 * self.estimate:+.3g} points{ci}"
        return f"difference {self.estimate:+.3g}{ci}"

    def margin_text(self) -> str:
        return margin_text(self.scale, self.margin)


def margin_text(scale: Scale, margin: float | None) -> str:
    """``±10 %`` (ratio), ``±1 point`` (proportion), ``±0.5`` (difference), or ``no margin``."""
    if not margin:
        return "no margin"
    if scale.log:
        return f"±{100 * margin:.3g} %"
    if scale.name == "proportion":
        points = 100 * margin
        return f"±{points:.3g} point{'' if points == 1 else 's'}"
    return f"±{margin:.3g}"


def _g(x: float) -> str:
    return f"{x:.3g}"


def p_text(p: float, name: str = "p") -> str:
    """``p = 0.032`` or ``p < 0.001``."""
    return f"{name} = {p:.2g}" if p >= 0.001 else f"{name} < 0.001"


def paired_values(a: Mapping[int, float], b: Mapping[int, float], scale: Scale) -> tuple[list[int], np.ndarray]:
    """Seeds both ran with a usable value (finite; positive on a ratio scale), ascending, and a - b on the scale."""
    usable = lambda v: v is not None and math.isfinite(v) and scale.in_range(v)  # noqa: E731
    seeds = sorted(s for s in a.keys() & b.keys() if usable(a[s]) and usable(b[s]))
    return seeds, scale.transform([a[s] for s in seeds]) - scale.transform([b[s] for s in seeds])


def compare_paired(
    a: Mapping[int, float],
    b: Mapping[int, float],
    scale: Scale,
    margin: float | None,
    *,
    higher_is_better: bool,
    names: tuple[str, str] = ("A", "B"),
    design: Design = FIXED,
    alpha: float = ALPHA,
    better: str = "better",
) -> Decision:
    """Compare ``a`` with ``b`` (seed -> metric value) over the seeds both ran; see the module doc.

    ``margin``: the equivalence margin (relative on a ratio scale, absolute otherwise; None or 0:
    never equivalent). Apply ``adjust`` to a family of decisions for Holm's correction.
    """
    seeds, x = paired_values(a, b, scale)
    n = len(seeds)
    bound = scale.bound(margin)
    nan = math.nan
    if n >= 2:
        p_diff_array, p_equiv_array, looks = sequential_p_values(x, design, bound)
        p_diff, p_equiv = float(p_diff_array), float(p_equiv_array)
        mean, sd = float(x.mean()), float(x.std(ddof=1))
        half = stats.t.ppf(1 - alpha / 2, n - 1) * sd / math.sqrt(n)
        low, high = _difference_range(scale)
        estimate, ci_low, ci_high = (float(scale.inverse(v)) for v in (mean, max(mean - half, low), min(mean + half, high)))
    else:
        p_diff = p_equiv = 1.0
        looks, mean, sd, estimate, ci_low, ci_high = 0, float(x.mean()) if n else nan, nan, nan, nan, nan
        if n == 1:
            estimate = float(scale.inverse(mean))
    decision = Decision(
        a=names[0], b=names[1], scale=scale, higher_is_better=higher_is_better, margin=margin, design=design,
        n=n, looks=looks, mean=mean, sd=sd, estimate=estimate, ci_low=ci_low, ci_high=ci_high,
        p_difference_raw=p_diff, p_equivalence_raw=p_equiv, p_difference=p_diff, p_equivalence=p_equiv, alpha=alpha,
        better=better,
    )  # fmt: skip
    return _settle(decision)


def _difference_range(scale: Scale) -> tuple[float, float]:
    """Where a difference on the comparison scale can lie: any log ratio; +-(high - low) for a bounded metric."""
    width = scale.high - scale.low
    return (-math.inf, math.inf) if scale.log or math.isinf(width) else (-width, width)


def adjust(decisions: Sequence[Decision]) -> list[Decision]:
    """Holm's correction over one family: each kind of p-value (difference, equivalence) adjusted, verdicts redone."""
    tested = [d.n >= 2 and d.looks > 0 for d in decisions]
    p_diff = holm([d.p_difference_raw if t else math.nan for d, t in zip(decisions, tested)])
    p_equiv = holm([d.p_equivalence_raw if t else math.nan for d, t in zip(decisions, tested)])
    family = sum(tested)
    return [
        _settle(replace(d, p_difference=pd, p_equivalence=pe, family=max(family, 1))) if t else d
        for d, t, pd, pe in zip(decisions, tested, p_diff, p_equiv)
    ]


def _settle(d: Decision) -> Decision:
    """The verdict and its one-line reason from the (adjusted) p-values."""
    holm_note = f", Holm over {d.family}" if d.family > 1 else ""
    look_note = f", look {d.looks} of {len(d.design.looks)}" if d.design.sequential else ""
    if d.n < 2 or d.looks == 0:
        why = (f"{d.n} paired seed{'s' if d.n != 1 else ''}: a paired test needs 2" if d.n < 2
               else f"{d.n} paired seeds: below the design's first look at {d.design.looks[0]}")  # fmt: skip
        needed = d.design.looks[0] if d.design.sequential else 2
        return replace(d, verdict=Verdict.UNDECIDED, reason=f"undecided: {why}", seeds_needed=max(needed, d.n + 1))
    flat = " with no spread between seeds: exact sign-flip test" if no_spread(d.sd, d.mean) else ""
    tests = f"{d.n} seeds{flat}{look_note}{holm_note}"
    if d.p_equivalence <= d.alpha:
        return replace(d, verdict=Verdict.EQUIVALENT, seeds_needed=None,
                       reason=f"equivalent within {d.margin_text()}: {d.effect_text()} ({p_text(d.p_equivalence, 'TOST p')}, {tests})")  # fmt: skip
    if d.p_difference <= d.alpha:
        a_higher = d.mean > 0
        verdict = Verdict.A_BETTER if a_higher == d.higher_is_better else Verdict.B_BETTER
        winner = d.a if verdict is Verdict.A_BETTER else d.b
        return replace(d, verdict=verdict, seeds_needed=None,
                       reason=f"{winner} {d.better}: {d.effect_text()} ({p_text(d.p_difference)}, {tests})")  # fmt: skip
    needed = seeds_needed(d.mean, d.sd, d.bound, d.alpha / d.family)
    if needed is None:
        need = "no number of seeds is likely to decide it (no observed difference and no margin)"
    elif needed > MAX_SEEDS_ESTIMATE:
        need = f"more than {MAX_SEEDS_ESTIMATE} seeds would be needed"
    else:
        needed = max(needed, d.n + 1)
        need = f"≈ {needed} seeds would likely decide it"
    equiv = f", {p_text(d.p_equivalence, 'TOST p')} for {d.margin_text()}" if d.margin else ""
    return replace(d, verdict=Verdict.UNDECIDED, seeds_needed=needed,
                   reason=f"undecided: {d.effect_text()} ({p_text(d.p_difference)}{equiv}; {tests}): {_why(d)}; {need}")  # fmt: skip


def _why(d: Decision) -> str:
    """Why an undecided comparison is undecided, in words a reader can check against its interval."""
    if no_spread(d.sd, d.mean):
        return f"every seed differs by the same amount, so the interval has no width, and {d.n} seeds cannot bring the sign-flip test to alpha"
    low, high = d.scale.transform(d.ci_low), d.scale.transform(d.ci_high)
    if low > 0 or high < 0:
        stricter = " and ".join(w for w, on in (("the look's share of alpha", d.design.sequential), ("Holm", d.family > 1)) if on)
        return f"the interval excludes no difference, but not at the stricter level of {stricter or 'the test'}"
    if d.bound and (low < -d.bound or high > d.bound):
        return f"the interval holds both no difference and differences beyond {d.margin_text()}"
    return "the interval holds no difference, and no margin was set to call the two equivalent" if not d.bound else (
        "the interval lies within the margin, but not at the stricter level of the design or Holm")  # fmt: skip


@dataclass(frozen=True)
class Location:
    """A model's typical value over seeds: geometric mean (ratio scale) or mean, with an interval inside the range."""

    center: float
    low: float
    high: float
    n: int
    method: str  # "t" or "bootstrap"; why not, where neither applies


def location(values: Sequence[float], scale: Scale, method: str = "t", level: float = LEVEL) -> Location:
    """Center and ``level`` interval of ``values`` (one per seed) that never leaves ``scale``'s range.

    ``t``: the t-interval of the mean on the comparison scale, mapped back (log scale: the
    geometric mean, exp of the interval: always positive) and intersected with the range (the
    true value lies in the range, so the intersection covers it exactly as often as the t-interval).
    ``bootstrap`` (used where n >= 5, else t): the percentile interval of the same center over
    seed resamples (fixed random seed), which lies between the smallest and largest value.
    """
    v = [float(x) for x in values if x is not None and math.isfinite(x)]
    if any(not scale.in_range(x) for x in v):
        return Location(math.nan, math.nan, math.nan, len(v), f"n/a (a value outside {scale.range_text})")
    n = len(v)
    if n == 0:
        return Location(math.nan, math.nan, math.nan, 0, "n/a (no value)")
    x = scale.transform(v)
    center = float(scale.inverse(x.mean()))
    if n < 2:
        return Location(center, math.nan, math.nan, 1, "n/a (1 seed)")
    if method == "bootstrap" and n >= BOOTSTRAP_MIN_SEEDS:
        rng = np.random.default_rng(0)
        means = x[rng.integers(0, n, (BOOTSTRAP_RESAMPLES, n))].mean(1)
        lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
        return Location(center, float(scale.inverse(lo)), float(scale.inverse(hi)), n, "bootstrap")
    half = stats.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n)
    lo, hi = (float(scale.inverse(x.mean() + s * half)) for s in (-1, 1))
    return Location(center, max(lo, scale.low), min(hi, scale.high), n, "t")
