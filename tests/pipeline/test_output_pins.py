"""Realigned weights are pinned byte for byte: a refactor that changes any output tensor fails here.

The SHA-256 of every weight file (and of masks.safetensors) on the tiny fixture was computed before the
scorers and methods became registered classes (issue 15); the default and the official configurations,
in LoRA and full-weight mode, and every scorer and method must still write exactly those bytes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mlflow_nlsr.options import RealignOptions
from mlflow_nlsr.pipeline import realign

CASES: dict[str, tuple[str, dict[str, object]]] = {
    "lora-default": ("default", {}),
    "lora-official": ("official", {}),
    "full-default": ("default", {"mode": "full"}),
    "full-official": ("official", {"mode": "full"}),
    "lora-magnitude": ("official", {"scorer": "magnitude"}),
    "lora-weight-lowrank": ("official", {"scorer": "weight-lowrank", "correction": "paper"}),
    "lora-random": ("official", {"scorer": "random"}),
    "lora-safelora": ("official", {"method": "safelora"}),
    "lora-safelora-nlsr": ("official", {"method": "safelora-nlsr"}),
    "full-magnitude": ("paper", {"mode": "full", "scorer": "magnitude", "variant": "paper"}),
    "full-weight-lowrank": ("official", {"mode": "full", "scorer": "weight-lowrank", "neuron": "row"}),
    "full-random": ("official", {"mode": "full", "scorer": "random"}),
}

EXPECTED: dict[str, dict[str, str]] = {
    "full-default": {
        "masks.safetensors": "b925b092ea55b635e59a0a1377d609a46b39af30846bd5431910b46495b5d531",
        "model.safetensors": "f7d77c6a6660721552c35d3f23d0f4122139def5b93d7caff4cbd8c625a56074",
    },
    "full-magnitude": {
        "masks.safetensors": "598ed9f51a0f703185cc95ec62d286351acdbda401a9562d67303384e3392062",
        "model.safetensors": "0d9d1b0fa89c3e652c50061c71c717584a7fcb490ad6fbae572dfee29dfa31e2",
    },
    "full-official": {
        "masks.safetensors": "b925b092ea55b635e59a0a1377d609a46b39af30846bd5431910b46495b5d531",
        "model.safetensors": "fc564249f40fcf49d99ea1a16d48b75cdf7aa18234deb84bbf3e0d41396bb990",
    },
    "full-random": {
        "masks.safetensors": "336bd16164ee8159088c323985c23c3f5ccbde58389402510c68eedb33bfce86",
        "model.safetensors": "393002ab7f23276e5c6c450da40f8334441ca109ae9aaf89c3687c51addb0b00",
    },
    "full-weight-lowrank": {
        "masks.safetensors": "db362f3a684309bc1cf6d1ecc304f0114f67175aebdc4a89a2b2932e600105ba",
        "model.safetensors": "e501c6c1d45d83aa78f96a3741de742aaa757952a167b3eda059c666d202cff4",
    },
    "lora-default": {
        "adapter_model.safetensors": "c8752c5204492fbff5cf21b45e31c548324571e7bc0503bdae03fb5656da706a",
        "masks.safetensors": "77daa81efa0660e23b2f71ff1b9ce63132ed14ebc43bbe1e1a94d4acddcb698c",
    },
    "lora-magnitude": {
        "adapter_model.safetensors": "17335ad7e9b2369b322ab39deb0409459abd201e7af6d672c31c6d437e5be7ff",
        "masks.safetensors": "8332f2905acee7311829c4a5558f90b07ee7fd8ff8bfd851a4a74d4b0379b050",
    },
    "lora-official": {
        "adapter_model.safetensors": "cff8323c5917c7852d037b85403e67ea9328b6a845864b3f6642ae25b210a1e5",
        "masks.safetensors": "77daa81efa0660e23b2f71ff1b9ce63132ed14ebc43bbe1e1a94d4acddcb698c",
    },
    "lora-random": {
        "adapter_model.safetensors": "085d7ddca094de87b65fd63cc484f36abcacbb3d69a67955b11752238f061573",
        "masks.safetensors": "a39ae46000bb0142f3f62e1348a14b96296f9c2b2fa2fede483e850d8a3039ee",
    },
    "lora-safelora": {
        "adapter_model.safetensors": "91ee69942aa38a9887e056b39dc41569f75c0a0467214edf6c6f75738d5945d8",
        "masks.safetensors": "414ff17f44ad8e7a63860c9e0a2de7863c212ce737121537877eba426135283d",
    },
    "lora-safelora-nlsr": {
        "adapter_model.safetensors": "aecd33d63c6181d51b93e1754aa862386bf3c2a0ca1c42e13072effd3958d5d6",
        "masks.safetensors": "58ddacbda685fed2ce86e9cf95341a15e24183820d0e7bf85a53286e1ccba0b2",
    },
    "lora-weight-lowrank": {
        "adapter_model.safetensors": "be86d9e2943025fdc1e8507a83a458ba7191c51647edf0af06141eecb341d4a4",
        "masks.safetensors": "5ead369a9685c2e395cc41b4eb52ca3d412b08792d2addaca9aac127bb5ffd9f",
    },
}


def options_of(case: str) -> RealignOptions:
    kind, overrides = CASES[case]
    if kind == "official":
        return RealignOptions.official(**overrides)
    return RealignOptions(**overrides)


def weight_hashes(out: Path) -> dict[str, str]:
    """sha256 of every safetensors file the realignment wrote (weights and masks)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.glob("*.safetensors"))}


def realign_hashes(tiny_adapters: tuple[Path, Path, Path], root: Path, case: str) -> dict[str, str]:
    base, aligned, finetuned = tiny_adapters
    result = realign(base, aligned, finetuned, root / case, options_of(case), progress=False)
    return weight_hashes(result.output)


@pytest.mark.parametrize("case", sorted(CASES))
def test_realigned_weights_are_byte_identical_to_the_pinned_hashes(tiny_adapters, tmp_path, case):
    assert realign_hashes(tiny_adapters, tmp_path, case) == EXPECTED[case]
