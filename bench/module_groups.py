"""Which modules carry the repair's over-refusal? Transplant into one group of modules at a time.

Every calibration rung and mask variant so far (docs/demo.md) moved the repair along one curve: fewer
attacks answered, more benign prompts refused. Those knobs choose *how much* to transplant, or which
modules at random (the Bernoulli draws). This script chooses modules by *structure*: it takes the
product-default repair (``mlflow nlsr realign``, selection all) and keeps its factors only in one group
of modules, the fine-tune's everywhere else, so each hybrid is NLSR restricted to that group:

* ``attn`` (q, k, v, o projections) and ``mlp`` (gate, up, down);
* ``early`` and ``late`` (the first and the second half of the decoder layers);
* ``all`` (the repair itself) for reference.

Then ``mlflow nlsr gate`` (decline judge) on safety, over-refusal, helpfulness and sentiment, the first
``--gate-limit`` items of each generative task. One JSON line per group.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python bench/module_groups.py --demo-work .nlsr-demo \\
        --out bench/out/module-groups --groups all attn mlp early late
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from contrast_masks import gate  # noqa: E402  (same layout: <out>/<name>/adapter, gated once)

from mlflow_nlsr.demo.stages import reference_dir  # noqa: E402
from mlflow_nlsr.io import read_adapter  # noqa: E402
from mlflow_nlsr.io.adapters import write_adapter  # noqa: E402

_LAYER = re.compile(r"\.layers\.(\d+)\.")
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


def layer_of(module: str) -> int:
    """The decoder layer index in a module prefix (``….layers.12.mlp.down_proj``)."""
    found = _LAYER.search(module)
    if found is None:
        raise SystemExit(f"no layer index in module {module!r}")
    return int(found[1])


def group_rule(name: str, layers: int) -> Callable[[str], bool]:
    """Which modules the group ``name`` takes from the repair."""
    rules: dict[str, Callable[[str], bool]] = {
        "all": lambda m: True,
        "attn": lambda m: m.rsplit(".", 1)[-1] in ATTN,
        "mlp": lambda m: m.rsplit(".", 1)[-1] in MLP,
        "early": lambda m: layer_of(m) < layers // 2,
        "late": lambda m: layer_of(m) >= layers // 2,
    }
    if name not in rules:
        raise SystemExit(f"unknown group {name!r}: expected one of {', '.join(rules)}")
    return rules[name]


def repair(demo: Path, out: Path) -> Path:
    """The product-default repair of the demo's fine-tune (``mlflow nlsr realign``, once)."""
    target = out / "repair"
    if not (target / "adapter_model.safetensors").is_file():
        aligned = reference_dir(demo)
        mlflow = Path(sys.executable).with_name("mlflow")
        subprocess.run([str(mlflow), "nlsr", "realign", "--base", str(demo / "base"), "--aligned",
                        str(aligned), "--finetuned", str(demo / "attack"), "--output", str(target)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return target


def hybrid(demo: Path, repaired: Path, name: str, out: Path) -> dict[str, Any]:
    """Write the group's hybrid adapter to ``out/<name>/adapter``; return how many modules it patched."""
    finetuned, realigned = read_adapter(demo / "attack"), read_adapter(repaired)
    layers = 1 + max(layer_of(m) for m in finetuned.modules)
    take = group_rule(name, layers)
    tensors = dict(finetuned.tensors)
    chosen = [m for m in finetuned.modules if take(m)]
    for key in realigned.tensors:
        if any(key.startswith(m + ".") for m in chosen):
            tensors[key] = realigned.tensors[key]
    write_adapter(out / name / "adapter", finetuned.config, tensors)
    return {"modules": len(chosen), "of": len(finetuned.modules)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-work", type=Path, default=Path(".nlsr-demo"))
    parser.add_argument("--out", type=Path, default=Path("bench/out/module-groups"))
    parser.add_argument("--groups", nargs="+", default=["all", "attn", "mlp", "early", "late"])
    parser.add_argument("--gate-limit", type=int, default=50)
    args = parser.parse_args()
    repaired = repair(args.demo_work, args.out)
    for name in args.groups:
        row = {"group": name, **hybrid(args.demo_work, repaired, name, args.out)}
        row |= gate(args.demo_work, args.out / name, args.gate_limit)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
