"""``MODEL_CARD.md`` of a realigned version, in the Hugging Face model-card layout.

YAML front matter, then Model Details (with lineage), Uses (direct and out-of-scope), Bias, Risks and
Limitations (the judge and its known weaknesses), Evaluation (each gate metric with its item count and
95 % Wilson interval, beside the fine-tuned and aligned references), and How to verify. The same text
is the registered version's description. Pure: the caller passes the report, gate results and counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow_nlsr import __version__
from mlflow_nlsr.gates.stats import interval_of_rate

CARD_NAME = "MODEL_CARD.md"
#: the headline metrics listed first (rates on items, so an interval applies)
HEADLINE = ("asr", "refusal_rate", "utility")
_JUDGE_LIMITS = {
    "keyword": "the keyword judge counts a response as a refusal when it contains a refusal marker; it "
    "misses refusals phrased without one and counts harmful answers that include a disclaimer as refusals",
    "decline": "the decline judge counts a response as a refusal only when it declines within its first "
    "sentences; a polite non-answer that never declines counts as compliance, and it does not check "
    "whether a compliant answer is actually harmful",
    "semantic": "the semantic judge is a small classifier on sentence embeddings trained on a few hundred "
    "labelled answers of the demo's SmolLM2 models; answers unlike those may be misclassified",
}


@dataclass(frozen=True)
class CardInputs:
    """Everything the card says, gathered by the service."""

    source_uri: str
    base_uri: str
    aligned_uri: str
    report: Mapping[str, Any]
    verdict: Mapping[str, Any]
    metrics: Mapping[str, Mapping[str, float]]
    gate_summary: Mapping[str, Any] = field(default_factory=dict)
    registered_by: str | None = None
    job_id: int | None = None


def read_gate_summary(gates_dir: Path) -> dict[str, Any]:
    """The realigned model's gate ``metrics.json`` (settings, per-metric item counts), or {}."""
    path = gates_dir / "realigned" / "metrics.json"
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def render(card: CardInputs) -> str:
    """The whole card as markdown."""
    parts = [_front_matter(card), _details(card), _uses(), _limits(card), _evaluation(card), _verify(card)]
    return "\n".join(parts)


def _front_matter(card: CardInputs) -> str:
    library = "peft" if card.report.get("mode", "lora") == "lora" else "transformers"
    return "\n".join(["---", f"library_name: {library}", f"base_model: {card.base_uri}",
                      "tags: [mlflow-nlsr, safety-realignment, nlsr]", "---", ""])  # fmt: skip


def _details(card: CardInputs) -> str:
    r = card.report
    patched = [m["name"] for m in r.get("modules", []) if m.get("patched")]
    shown = ", ".join(f"`{p}`" for p in patched[:20]) + (
        f" … (+{len(patched) - 20})" if len(patched) > 20 else ""
    )
    inputs = "\n".join(f"  - {k}: `{v}`" for k, v in (r.get("inputs") or {}).items())
    return f"""# Model card: NLSR-realigned from {card.source_uri}

## Model Details

### Model Description
The fine-tuned model {card.source_uri} after Neuron-Level Safety Realignment (Yi et al., AAAI 2025):
safety-critical neurons damaged by fine-tuning were restored from the aligned reference, without training.

- **Registered by:** {card.registered_by or "unknown (MLflow recorded no user on the source version)"}
- **Realigned by:** mlflow-nlsr {__version__}, job {card.job_id}
- **Model type:** {"LoRA adapter" if r.get("mode", "lora") == "lora" else "full-weight checkpoint"}
- **Finetuned from (source):** {card.source_uri}

### Lineage
- base model: {card.base_uri}
- aligned reference: {card.aligned_uri}
- method {r.get("method")}, variant {r.get("variant")}, scorer {r.get("scorer")},
  selection {r.get("selection")}, sparsity {r.get("sparsity")}, beta {r.get("beta")}, seed {r.get("seed")}
- options: `{json.dumps(r.get("options") or {}, sort_keys=True, default=str)}`
- patched modules ({len(patched)} of {len(r.get("modules", []))}): {shown or "none"}
- input sha256:
{inputs}
"""


def _uses() -> str:
    return """## Uses

### Direct Use
The same tasks as the fine-tuned source version, with the refusal behaviour of the aligned reference
restored as far as the gates below measure it.

### Out-of-Scope Use
- Treating the gates as a safety certification: they measure small, in-house prompt suites only.
- Loading the adapter on any base model other than the one named above.
- Adversarial (jailbreak) settings, languages and domains the gate suites do not cover.
"""


def _limits(card: CardInputs) -> str:
    judge = card.gate_summary.get("judge", "unknown")
    detail = card.gate_summary.get("judge_detail") or ""
    known = _JUDGE_LIMITS.get(str(judge), "see docs/gates.md for this judge's validation")
    return f"""## Bias, Risks, and Limitations
- Judge: `{judge}` {detail}: {known}.
- Rates are measured on the item counts below; with few items the 95 % intervals are wide, and a
  passing verdict on a small limit is weaker evidence than the same rates on the full suites.
- Realignment restores the aligned reference's neurons; capabilities learned in those neurons during
  fine-tuning may be lost (see the utility rows).
"""


def _evaluation(card: CardInputs) -> str:
    samples = card.gate_summary.get("metric_samples") or {}
    real = card.metrics.get("realigned", {})
    names = [m for m in HEADLINE if m in real] + sorted(
        m for m in real if m not in HEADLINE and m in samples and "_" in m and m.endswith(("_acc", "_match"))
    )
    rows = [
        "| metric | items | realigned (95 % CI) | fine-tuned | aligned reference |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        n = int((samples.get(name) or {}).get("effective", 0))
        value = float(real[name])
        ci = interval_of_rate(value, n) if n else None
        cell = f"{value:.3f} [{ci.low:.3f}, {ci.high:.3f}]" if ci else f"{value:.3f} (no item count)"
        refs = [f"{card.metrics.get(r, {}).get(name, float('nan')):.3f}" for r in ("finetuned", "aligned")]
        rows.append(f"| {name} | {n or '-'} | {cell} | {refs[0]} | {refs[1]} |")
    tasks = card.gate_summary.get("n_samples") or {}
    counts = ", ".join(f"{t} {c.get('effective')} of {c.get('original')}" for t, c in tasks.items())
    rules = "\n".join(f"- {r.get('message')}" for r in card.verdict.get("reasons", []))
    passed = "PASSED" if card.verdict.get("passed") else "FAILED"
    return f"""## Evaluation

### Testing Data, Factors & Metrics
lm-eval suites {", ".join(card.gate_summary.get("suites") or [])};
items scored per task: {counts or "unknown"}.
Intervals are 95 % Wilson score intervals of each rate on its item count.

### Results
{chr(10).join(rows)}

Gate verdict: **{passed}**
{rules}
"""


def _verify(card: CardInputs) -> str:
    return f"""## How to verify
```
mlflow nlsr verify models:/<name>/<this version>            # weights and input hashes vs lineage
mlflow nlsr verify models:/<name>/<this version> --rerun    # realign again and compare bytes
```
Weights sha256: `{card.report.get("output_sha256")}`.
"""
