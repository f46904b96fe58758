"""One answer across task settings: a random-effects meta-analysis of paired comparisons.

Each task setting is one study. Its effect is put on a common scale by dividing by its
equivalence margin: y = (mean paired difference on the metric's scale) / (margin on that scale),
signed so that positive means the first model is better. So y = 1 is "better by exactly the
margin" whatever the metric: 10 % lower error on a ratio scale, 1 point more accuracy, 5 % more
throughput. Its variance is s^2 / (n * L^2), times (t_{n-1} / z)^2 (95 %) so that a setting with
few seeds weighs in with its t-interval, not a normal one. Studies are pooled by DerSimonian and
Laird (1986):

    w_i = 1 / v_i,  Q = sum w_i (y_i - y_FE)^2,  tau^2 = max(0, (Q - (k - 1)) / (sum w - sum w^2 / sum w)),
    mu = sum w*_i y_i / sum w*_i  with  w*_i = 1 / (v_i + tau^2),  se = 1 / sqrt(sum w*_i),

with a normal interval mu +- z se. The pooled verdict reads like a single comparison's, with the
margin at |mu| = 1: equivalent if both one-sided z-tests put mu inside (-1, 1), else better if the
z-test of mu = 0 rejects, else undecided; Holm across the pair types of one question.
With few settings tau^2 is poorly estimated; the report says how many were pooled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats

from benchmark.decide.paired import ALPHA, LEVEL, Decision, Verdict, holm, no_spread, p_text


@dataclass(frozen=True)
class Meta:
    k: int
    estimate: float
    se: float
    ci_low: float
    ci_high: float
    tau2: float
    q: float
    i2: float  # share of the variation between studies that is heterogeneity, not chance (Higgins & Thompson)


def meta_analysis(estimates: Sequence[float], variances: Sequence[float], level: float = LEVEL) -> Meta:
    """DerSimonian-Laird random-effects pooling of ``estimates`` with their within-study ``variances``."""
    y, v = np.asarray(estimates, dtype=float), np.asarray(variances, dtype=float)
    k = len(y)
    if k == 0:
        return Meta(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    w = 1 / v
    fixed = (w * y).sum() / w.sum()
    q = float((w * (y - fixed) ** 2).sum())
    c = w.sum() - (w * w).sum() / w.sum()
    tau2 = max(0.0, (q - (k - 1)) / c) if k > 1 else 0.0
    w_star = 1 / (v + tau2)
    mu = float((w_star * y).sum() / w_star.sum())
    se = float(1 / math.sqrt(w_star.sum()))
    z = stats.norm.ppf((1 + level) / 2)
    i2 = (q - (k - 1)) / q if q > k - 1 and k > 1 else 0.0
    return Meta(k, mu, se, float(mu - z * se), float(mu + z * se), float(tau2), q, float(i2))


@dataclass(frozen=True)
class Study:
    label: str  # the task setting
    decision: Decision

    @property
    def usable(self) -> bool:
        d = self.decision
        return d.n >= 2 and d.bound > 0 and not no_spread(d.sd, d.mean)

    @property
    def sign(self) -> float:
        return 1.0 if self.decision.higher_is_better else -1.0

    @property
    def effect(self) -> float:
        """Effect in margins, positive: the first model better."""
        d = self.decision
        return self.sign * d.mean / d.bound

    @property
    def variance(self) -> float:
        """s^2 / (n L^2), inflated by (t_{n-1} / z)^2 at 95 %: with few seeds the spread is itself uncertain,
        and this makes a setting pooled alone get exactly its own t-interval."""
        d = self.decision
        inflation = (stats.t.ppf((1 + LEVEL) / 2, d.n - 1) / stats.norm.ppf((1 + LEVEL) / 2)) ** 2
        return d.sd**2 / d.n / d.bound**2 * inflation

    def interval(self) -> tuple[float, float]:
        """The setting's 95 % t-interval, in margins."""
        half = stats.norm.ppf((1 + LEVEL) / 2) * math.sqrt(self.variance)
        return self.effect - half, self.effect + half


@dataclass(frozen=True)
class Pooled:
    """The answer for one matched pair type (e.g. 1-layer unidirectional GRU vs LSTM) across task settings."""

    a: str
    b: str
    question: str  # e.g. "main metric" or "throughput"
    studies: list[Study]
    meta: Meta
    p_difference_raw: float
    p_equivalence_raw: float
    p_difference: float
    p_equivalence: float
    family: int = 1
    alpha: float = ALPHA
    kind: str = ""  # the pair type, e.g. "1 layer, unidirectional"
    better: str = "better"
    verdict: Verdict = Verdict.UNDECIDED
    reason: str = ""
    tally: dict[str, int] = field(default_factory=dict)

    @property
    def left_out(self) -> list[Study]:
        return [s for s in self.studies if not s.usable]

    @property
    def common_ratio(self) -> tuple[float, float, float] | None:
        """The pooled effect as a ratio (with interval) when every pooled study is on a ratio scale with one margin."""
        used = [s for s in self.studies if s.usable]
        bounds = {round(s.decision.bound, 12) for s in used}
        if not used or not all(s.decision.scale.log for s in used) or len(bounds) != 1 or len({s.sign for s in used}) != 1:
            return None
        scale = used[0].sign * used[0].decision.bound  # back to a/b on the log scale
        low, high = sorted(math.exp(scale * v) for v in (self.meta.ci_low, self.meta.ci_high))
        return math.exp(scale * self.meta.estimate), low, high


def tally(studies: Sequence[Study]) -> dict[str, int]:
    """Per setting, from the first model's side: wins, equivalent, losses, undecided."""
    counts = {"wins": 0, "equivalent": 0, "losses": 0, "undecided": 0}
    for s in studies:
        key = {Verdict.A_BETTER: "wins", Verdict.B_BETTER: "losses", Verdict.EQUIVALENT: "equivalent"}
        counts[key.get(s.decision.verdict, "undecided")] += 1
    return counts


def pool(studies: Sequence[Study], a: str, b: str, question: str, kind: str = "", alpha: float = ALPHA) -> Pooled:
    """Pool the usable studies (2+ paired seeds, a margin, some spread) of one pair type; see the module doc."""
    used = [s for s in studies if s.usable]
    meta = meta_analysis([s.effect for s in used], [s.variance for s in used])
    if meta.k:
        z = meta.estimate / meta.se
        p_diff = float(2 * stats.norm.sf(abs(z)))
        p_equiv = float(max(stats.norm.sf((meta.estimate + 1) / meta.se), stats.norm.cdf((meta.estimate - 1) / meta.se)))
    else:
        p_diff = p_equiv = math.nan
    better = studies[0].decision.better if studies else "better"
    pooled = Pooled(a, b, question, list(studies), meta, p_diff, p_equiv, p_diff, p_equiv, alpha=alpha, kind=kind, better=better,
                    tally=tally(studies))  # fmt: skip
    return _settle(pooled)


def adjust_pooled(answers: Sequence[Pooled]) -> list[Pooled]:
    """Holm's correction across the pair types of one question."""
    p_diff = holm([p.p_difference_raw for p in answers])
    p_equiv = holm([p.p_equivalence_raw for p in answers])
    family = sum(not math.isnan(p.p_difference_raw) for p in answers)
    return [_settle(replace(p, p_difference=d, p_equivalence=e, family=max(family, 1))) for p, d, e in zip(answers, p_diff, p_equiv)]


def _settle(p: Pooled) -> Pooled:
    m = p.meta
    if not m.k:
        return replace(p, verdict=Verdict.UNDECIDED, reason="undecided: no setting with 2+ paired seeds and a margin to pool")
    effect = f"pooled effect {m.estimate:+.2f} margins [{m.ci_low:+.2f}, {m.ci_high:+.2f}]"
    ratio = p.common_ratio
    if ratio is not None:
        effect += f" (ratio {p.a}/{p.b} {ratio[0]:.3g} [{ratio[1]:.3g}, {ratio[2]:.3g}])"
    holm_note = f", Holm over {p.family} pair types" if p.family > 1 else ""
    how = f"random effects over {m.k} setting{'s' if m.k != 1 else ''}, I² = {m.i2:.0%}{holm_note}"
    if p.p_equivalence <= p.alpha:
        return replace(p, verdict=Verdict.EQUIVALENT,
                       reason=f"equivalent within the margin: {effect}; {p_text(p.p_equivalence, 'equivalence p')} ({how})")  # fmt: skip
    if p.p_difference <= p.alpha:
        verdict = Verdict.A_BETTER if m.estimate > 0 else Verdict.B_BETTER
        winner = p.a if verdict is Verdict.A_BETTER else p.b
        return replace(p, verdict=verdict, reason=f"{winner} {p.better}: {effect}; {p_text(p.p_difference)} ({how})")
    return replace(p, verdict=Verdict.UNDECIDED,
                   reason=f"undecided: {effect}; {p_text(p.p_difference)}, {p_text(p.p_equivalence, 'equivalence p')} ({how}); "
                          "more settings or seeds per setting would narrow it")  # fmt: skip
