"""The quick gate as a screen: is a quick-gate miss within the sampling error of the full gate?

The quick gate scores the first ``n_q`` items of a task, the full gate the first ``n_f``. A rate ``q``
on the quick items tells the full-gate rate only up to the ``m = n_f − n_q`` items the quick gate did
not see: the full rate is ``(n_q·q + m·r) / n_f`` and meets a threshold ``t`` (``rate <= t``) when
``r <= t − n_q·(q − t)/m``. With ``r`` drawn at the threshold (standard error ``sqrt(t(1−t)/m)``),
a miss of ``q − t <= z·sqrt(t(1−t)·m)/n_q`` still passes the full gate with probability at least
``Φ(−z)``, so the search asks the full gate rather than dropping the configuration. The same
holds mirrored for ``>=`` rules. Where both gates score the same items (``m = 0``: e.g. a task
without a limit) the quick value *is* the full value and the tolerance is 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: metric -> (items the quick gate scored, items the full gate scores)
SampleSizes = Mapping[str, tuple[int, int]]
#: an attempt's model dir -> the sample sizes of its quick gate (after the quick gate ran)
SampleSizesFn = Callable[[Path], SampleSizes]


def screen_tolerance(threshold: float, n_quick: int, n_full: int, z: float) -> float:
    """How far a rate on `n_quick` items may miss `threshold` and still be worth the `n_full`-item gate."""
    unseen = n_full - n_quick
    if unseen <= 0 or n_quick <= 0 or z <= 0:
        return 0.0
    t = min(1.0, max(0.0, threshold))
    return z * math.sqrt(t * (1.0 - t) * unseen) / n_quick


def within_sampling_error(gaps: tuple[tuple[str, float, float], ...], sizes: SampleSizes, z: float) -> bool:
    """True when every failing rule's (metric, value, threshold) misses by no more than its tolerance.

    A metric without known sample sizes gets no tolerance (its quick value is taken as final).
    """
    if not gaps:
        return False
    for metric, value, threshold in gaps:
        n_quick, n_full = sizes.get(metric, (0, 0))
        if abs(value - threshold) > screen_tolerance(threshold, n_quick, n_full, z) + 1e-12:
            return False
    return True


def full_sizes(
    samples: Mapping[str, Mapping[str, Any]], limit: int | None, task_limits: Mapping[str, int | None]
) -> dict[str, tuple[int, int]]:
    """(quick, full) item counts per metric from a quick gate's ``metric_samples`` and the full limits.

    `samples` maps metric -> {"task", "effective": items scored, "original": items the task has}
    (gates.metrics.metric_samples); the full gate scores ``task_limits[task]`` items where the task is
    named there (None: every item), else `limit` (None: every item).
    """
    out: dict[str, tuple[int, int]] = {}
    for metric, n in samples.items():
        quick, total = int(n["effective"]), int(n.get("original", n["effective"]))
        task = str(n.get("task", ""))
        cap = task_limits.get(task, limit)
        out[metric] = (quick, total if cap is None else min(total, int(cap)))
    return out


def quick_gate_sizes(
    metrics_file: Path, limit: int | None, task_limits: Mapping[str, int | None]
) -> dict[str, tuple[int, int]]:
    """:func:`full_sizes` of a quick gate's metrics.json; {} when it is missing or has no counts.

    A gate run from before the counts were recorded gets no tolerance: its quick verdict is final. Where
    the file lists its rates (``intervals``), only rates get sizes: the tolerance is a binomial one, so a
    mean of other values (``helpfulness_nll``) keeps its quick value (the default config scores every
    helpfulness item in the quick gate, so that value is the full one).
    """
    path = Path(metrics_file)
    summary = json.loads(path.read_text()) if path.is_file() else {}
    samples = summary.get("metric_samples")
    if samples and isinstance(summary.get("intervals"), Mapping):
        samples = {m: n for m, n in samples.items() if m in summary["intervals"]}
    return full_sizes(samples, limit, task_limits) if samples else {}
