"""Gate hand-picked realignment options on one bench fine-tune with the full gate (rung exploration).

Uses bench/calibration.py's caches (realignments by options hash, gate runs by model and limit), so a
later calibration run reuses what this gated. One JSON line per option set goes to
``<out>/explore-p<ratio>-g<limit>.jsonl``.

    OMP_NUM_THREADS=1 python bench/explore_rungs.py --ratio 0.05 --seed 42 \
        --try sp0.9-all-b1.1 sp0.9-mod0.5-b1.1
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import calibration as bench  # noqa: E402  (bench/ is not a package)

from mlflow_nlsr.calibration.ladder import predicted_strength  # noqa: E402
from mlflow_nlsr.calibration.search import check  # noqa: E402
from mlflow_nlsr.demo.job import DEMO_GATES  # noqa: E402
from mlflow_nlsr.demo.recipe import DemoSettings  # noqa: E402
from mlflow_nlsr.gates.policy import parse_gate_config  # noqa: E402
from mlflow_nlsr.options import RealignOptions  # noqa: E402

_SPEC = re.compile(r"^sp(?P<sp>[\d.]+)-mod(?P<mod>all|[\d.]+)-b(?P<beta>[\d.]+)(?:-draw(?P<draw>\d+))?$")


def parse(spec: str, seed: int) -> RealignOptions:
    """``sp0.9-all-b1.1`` / ``sp0.8-mod0.5-b0.9-draw43`` -> options (official variant, Bernoulli modules)."""
    m = _SPEC.match(spec.replace("-all-", "-modall-"))
    if m is None:
        raise SystemExit(f"cannot parse {spec!r}: expected sp<sparsity>-mod<all|fraction>-b<beta>[-draw<n>]")
    changes: dict[str, object] = {"sparsity": float(m["sp"]), "beta": float(m["beta"])}
    if m["mod"] == "all":
        changes["selection"] = "all"
    else:
        changes.update(selection="official", layer_rate=float(m["mod"]))
    if m["draw"]:
        changes["selection_seed"] = int(m["draw"])
    return RealignOptions(seed=seed).replace(**changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo-work", type=Path, default=Path(".nlsr-demo"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/calibration"))
    parser.add_argument("--ratio", type=float, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--gate-limit", type=int, default=50)
    parser.add_argument("--try", dest="specs", nargs="+", required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    demo, out = args.demo_work.resolve(), args.out.resolve()
    models = (demo / "base", demo / "align", bench.finetune(demo, out, args.ratio, DemoSettings.full()))
    cache = bench.Cache(out / f"p{args.ratio:g}" / "cases", out / "gates", models, args.batch_size)
    cache.limits = {True: args.gate_limit, False: args.gate_limit}
    config = parse_gate_config(DEMO_GATES)
    refs = cache.references(config)
    baselines = {role: cache.gate(path, False) for role, path in refs.items()}
    target = out / f"explore-p{args.ratio:g}-g{args.gate_limit}.jsonl"
    for spec in args.specs:
        options = parse(spec, args.seed)
        model = cache.root / "explore" / options.sha256()[:16]
        report = cache.realign(options, model)
        verdict = check(config, cache.gate(model, False), baselines)
        line = {
            "ratio": args.ratio,
            "seed": args.seed,
            "spec": spec,
            "passed": verdict.passed,
            **bench.row(verdict.metrics),
            "failed": list(verdict.failed),
            "predicted_strength": round(predicted_strength(options), 4),
            "relative_change": report["strength"]["relative_change"],
            "patched_modules": report.get("patched_modules"),
        }
        bench.log(json.dumps(line))
        with bench.locked(target), target.open("a") as fh:
            fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
