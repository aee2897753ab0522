"""Sampling uncertainty of gate rates: Wilson score intervals and the exact McNemar test.

Pure functions on counts (standard library only). Every rate a gate reports is ``k`` successes out of
``n`` items; the interval says how far the true rate may be from ``k / n`` at that item count, and
McNemar says whether two models scored on the *same* prompts really differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: two-sided 95 % normal quantile
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    """A rate with its item count and a two-sided confidence interval (all in [0, 1])."""

    rate: float
    n: int
    low: float
    high: float

    @property
    def half_width(self) -> float:
        """Half the interval's width: the sampling error a rule's margin should exceed."""
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, float | int]:
        """Return ``{"rate", "n", "low", "high"}`` for metrics.json and reports."""
        return {"rate": self.rate, "n": self.n, "low": self.low, "high": self.high}


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval:
    """Wilson score interval of ``successes / n`` (Wilson 1927); exact at 0 and n, never outside [0, 1].

    Args:
        successes: number of items that count (0 ≤ successes ≤ n).
        n: number of items scored (≥ 0; 0 gives the uninformative interval [0, 1] at rate NaN).
        z: normal quantile (1.96 for 95 %).

    Returns:
        Interval(rate=successes/n, n, low, high).

    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, found {successes} of {n}")
    if n == 0:
        return Interval(math.nan, 0, 0.0, 1.0)
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    low = 0.0 if successes == 0 else max(0.0, centre - spread)
    high = 1.0 if successes == n else min(1.0, centre + spread)
    return Interval(p, n, low, high)


def interval_of_rate(rate: float, n: int, z: float = Z95) -> Interval:
    """Wilson interval of a rate measured on `n` items (the success count is ``round(rate * n)``)."""
    if n <= 0 or math.isnan(rate):
        return Interval(rate, max(n, 0), 0.0, 1.0)
    return wilson_interval(min(n, max(0, round(rate * n))), n, z)


def half_width(rate: float, n: int, z: float = Z95) -> float:
    """Half-width of the Wilson interval of `rate` at `n` items."""
    return interval_of_rate(rate, n, z).half_width


@dataclass(frozen=True)
class McNemar:
    """Exact McNemar test of two models scored 0/1 on the same items.

    ``only_a`` counts items where model A scored 1 and B 0, ``only_b`` the reverse; ``p_value`` is the
    two-sided exact binomial p-value of the discordant split (1.0 when there are no discordant items).
    """

    only_a: int
    only_b: int
    p_value: float

    def significant(self, alpha: float = 0.05) -> bool:
        """Return True when the two models differ at level `alpha`."""
        return self.p_value < alpha

    def to_dict(self) -> dict[str, float | int]:
        """Return the counts and the p-value."""
        return {"only_a": self.only_a, "only_b": self.only_b, "p_value": self.p_value}


def mcnemar_exact(only_a: int, only_b: int) -> McNemar:
    """Exact (binomial) McNemar test from the discordant counts.

    Args:
        only_a: items where A scored 1 and B scored 0.
        only_b: items where B scored 1 and A scored 0.

    Returns:
        McNemar with the two-sided p-value ``min(1, 2 · P(X ≤ min(only_a, only_b)))``, X ~ Bin(a+b, 1/2).

    """
    if only_a < 0 or only_b < 0:
        raise ValueError(f"mcnemar_exact needs non-negative counts, found {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return McNemar(only_a, only_b, 1.0)
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return McNemar(only_a, only_b, min(1.0, 2 * tail))


def mcnemar_paired(a: dict[str, int], b: dict[str, int]) -> McNemar:
    """McNemar test of two ``{item id: 0/1}`` score maps on the items they share.

    Raises:
        ValueError: when the two maps share no item (nothing to compare).

    """
    shared = sorted(set(a) & set(b))
    if not shared:
        raise ValueError("mcnemar_paired: the two models were scored on no common item")
    only_a = sum(1 for i in shared if a[i] and not b[i])
    only_b = sum(1 for i in shared if b[i] and not a[i])
    return mcnemar_exact(only_a, only_b)
