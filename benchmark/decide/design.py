"""When a comparison may be looked at: a fixed sample, or a group-sequential design over planned looks.

A sequential design fixes, before any seed is run, the looks n_1 < n_2 < ... < n_K (numbers of
paired seeds) and the share w_k of the error rate alpha spent at each (sum of w_k = 1). At look k
a test may reject only if its p-value is at most w_k * alpha. By the union bound the chance of a
false rejection at *any* look is at most sum(w_k * alpha) = alpha, whatever the correlation
between looks and however many looks a comparison reaches: that is the whole proof. Equivalently,
the comparison's sequential p-value is min over the looks reached of p_k / w_k, a valid p-value.

``until_decided`` builds the looks by doubling: the planned seed count (at least 3, since a paired
t-test on 2 seeds has 1 degree of freedom), then twice that, and so on, ending at ``max_seeds``;
the alpha spent grows with the square of the seeds (w_k = (n_k^2 - n_{k-1}^2) / N^2), so early
looks stop only clear effects and the last look keeps most of the power.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MIN_FIRST_LOOK = 3


@dataclass(frozen=True)
class Design:
    """``looks`` (paired-seed counts) and the ``weights`` (alpha shares) spent at each; no looks: a fixed sample."""

    looks: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()

    def __post_init__(self):
        if len(self.looks) != len(self.weights) or list(self.looks) != sorted(set(self.looks)):
            raise ValueError(f"looks must increase and match the weights: {self.looks}, {self.weights}")
        if self.looks and (min(self.looks) < 2 or abs(sum(self.weights) - 1) > 1e-9 or min(self.weights) < 0):
            raise ValueError(f"looks start at 2 seeds or more and the weights sum to 1: {self.looks}, {self.weights}")

    @property
    def sequential(self) -> bool:
        return bool(self.looks)

    @property
    def max_seeds(self) -> int | None:
        return self.looks[-1] if self.looks else None

    def reached(self, n: int) -> list[tuple[int, float]]:
        """(seeds, alpha share) of each look that ``n`` paired seeds reach; a fixed sample looks once, at n."""
        if not self.looks:
            return [(n, 1.0)] if n >= 2 else []
        return [(k, w) for k, w in zip(self.looks, self.weights) if k <= n]

    def next_look(self, n: int) -> int | None:
        """The seed count of the first look beyond ``n``, or None (fixed sample, or past the last look)."""
        return next((k for k in self.looks if k > n), None)

    @classmethod
    def doubling(cls, planned: int, max_seeds: int) -> Design:
        """Looks at max(planned, 3), then doubling, ending at ``max_seeds``; quadratic alpha spending."""
        first = min(max(planned, MIN_FIRST_LOOK), max_seeds)
        looks = [first]
        while looks[-1] < max_seeds:
            looks.append(min(2 * looks[-1], max_seeds))
        if looks[0] < 2:
            raise ValueError(f"a sequential design needs at least 2 seeds (max_seeds {max_seeds})")
        shares, previous = [], 0
        for n in looks:
            shares.append((n * n - previous * previous) / (max_seeds * max_seeds))
            previous = n
        return cls(tuple(looks), tuple(shares))

    def describe(self) -> str:
        if not self.looks:
            return "fixed sample: one test at all paired seeds"
        parts = ", ".join(f"{n} ({w:.0%})" for n, w in zip(self.looks, self.weights))
        return f"group-sequential, looks at seeds (alpha share): {parts}"

    def to_json(self) -> str:
        return json.dumps({"looks": list(self.looks), "weights": list(self.weights)})

    @classmethod
    def from_json(cls, text: str | None) -> Design:
        if not text:
            return FIXED
        data = json.loads(text)
        return cls(tuple(data["looks"]), tuple(data["weights"]))


FIXED = Design()
