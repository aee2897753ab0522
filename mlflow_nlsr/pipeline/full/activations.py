"""Input Gram matrices of every linear module of the reference model, for the actsvd scorer in full mode.

This is the one full-weight step that loads a model: the reference W_0 + ΔW_e (linear weights built one
tensor at a time from the inputs; every other tensor from the aligned model) runs on the calibration
pairs, and a forward pre-hook on each realigned linear module adds ``XᵀX`` over response tokens
(spec §1.4a–b). Modules that read the same input (q/k/v, gate/up) share one Gram matrix. The Gram
matrices are written to a scratch safetensors file and the model is freed before the streaming passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from mlflow_nlsr.core import extrapolate_delta, input_gram
from mlflow_nlsr.errors import CalibrationError
from mlflow_nlsr.io.hashing import sha256_file
from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import actsvd_data
from mlflow_nlsr.pipeline.full.inputs import Source

GRAMS_NAME = "grams.safetensors"


def reference_tensors(base: Source, aligned: Source, linear: set[str], options: RealignOptions
                      ) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) of the reference model: W_0 + ΔW_e for realigned weights, else the aligned tensor."""
    for key in aligned.ordered_keys():
        w_a = aligned.get(key)
        if key not in linear:
            yield key, w_a
            continue
        w_0 = base.get(key).float()
        delta_e = extrapolate_delta(w_a.float() - w_0, variant=options.variant, beta=options.beta)
        yield key, (w_0 + delta_e).to(w_a.dtype)


def _load_reference(model_dir: Path, base: Source, aligned: Source, linear: set[str],
                    options: RealignOptions, device: str) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))
    with torch.no_grad():
        for key, tensor in reference_tensors(base, aligned, linear, options):
            target = params.get(key)
            if target is not None:
                target.copy_(tensor.to(target.dtype))
    model.tie_weights()
    return model.to(device).eval()


def _pairs(options: RealignOptions, model: Any, tokenizer: Any) -> tuple[list[dict[str, str]], Path]:
    if options.calibration_prompts:
        source = Path(options.calibration_prompts)
        prompts = actsvd_data.select_prompts(actsvd_data.load_prompts(source),
                                             samples=options.calibration_samples, seed=options.seed)
        pairs = actsvd_data.generate_pairs(model, tokenizer, prompts, max_new_tokens=options.max_length)
        return pairs, source
    source = Path(options.calibration) if options.calibration else actsvd_data.default_calibration_path()
    return actsvd_data.load_pairs(source), source


class _GramHooks:
    """Forward pre-hooks adding XᵀX of response-token inputs, one Gram per distinct input tensor."""

    def __init__(self, modules: dict[str, Any]) -> None:
        self.grams: dict[str, torch.Tensor] = {}
        self.alias: dict[str, str] = {}
        self.token_mask: torch.Tensor | None = None
        self._seen: dict[int, tuple[str, torch.Tensor]] = {}  # holds the tensors so ids are not reused
        self._first_batch = True
        self.handles = [m.register_forward_pre_hook(self._hook(k)) for k, m in modules.items()]

    def _hook(self, key: str) -> Callable[..., None]:
        def hook(_module: Any, args: tuple[Any, ...]) -> None:
            x = args[0]
            if key in self.alias:
                return
            if self._first_batch:
                owner = self._seen.get(id(x))
                if owner is not None and owner[1] is x:
                    self.alias[key] = owner[0]
                    return
                self._seen[id(x)] = (key, x)
            rows = x.reshape(-1, x.shape[-1])
            if self.token_mask is not None:
                rows = rows[self.token_mask.reshape(-1)]
            gram = input_gram(rows)
            self.grams[key] = self.grams[key] + gram if key in self.grams else gram

        return hook

    def end_batch(self) -> None:
        self._first_batch = False
        self._seen.clear()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def capture_grams(model_dir: Path, tokenizer_dir: Path, base: Source, aligned: Source, linear: set[str],
                  options: RealignOptions, out_dir: Path, device: str = "cpu"
                  ) -> tuple[Path, dict[str, str], dict[str, Any]]:
    """Run the reference model on the calibration pairs; return the Gram file, alias map and provenance.

    Returns:
        ``(path of GRAMS_NAME in out_dir, alias, info)``: the file maps weight names to float64
        [d_in, d_in] Gram matrices; ``alias[key]`` names the weight whose Gram `key` shares (same input
        tensor); ``info`` records the calibration source, its sha256 and the sample/token counts.

    """
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = _load_reference(model_dir, base, aligned, linear, options, device)
    pairs, source = _pairs(options, model, tokenizer)
    samples = actsvd_data.encode_pairs(tokenizer, pairs, samples=options.calibration_samples,
                                       max_length=options.max_length, seed=options.seed)
    modules = {f"{name}.weight": m for name, m in model.named_modules() if f"{name}.weight" in linear}
    missing = sorted(linear - set(modules))
    if missing:
        raise CalibrationError(f"the reference model has no module for weight {missing[0]}")
    hooks = _GramHooks(modules)
    try:
        with torch.no_grad():
            for sample in samples:
                hooks.token_mask = (sample.labels != actsvd_data.IGNORE_INDEX).to(device)
                model(input_ids=sample.input_ids.unsqueeze(0).to(device))
                hooks.end_batch()
    finally:
        hooks.remove()
    del model
    path = out_dir / GRAMS_NAME
    save_file({k: v.cpu().contiguous() for k, v in hooks.grams.items()}, str(path))
    info = {"source": str(source), "generated": bool(options.calibration_prompts),
            "sha256": sha256_file(source), "samples": len(samples),
            "response_tokens": int(sum(int((s.labels != actsvd_data.IGNORE_INDEX).sum()) for s in samples)),
            "device": device}
    return path, hooks.alias, info
