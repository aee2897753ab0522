"""Repeated KEY=VALUE options (--set, --tag) split at the first "=" into stripped keys, or ConfigError."""

from __future__ import annotations

import pytest

from mlflow_nlsr.cli._common import key_values
from mlflow_nlsr.cli._service import parse_sets
from mlflow_nlsr.cli.log_model import _tags
from mlflow_nlsr.errors import ConfigError


def test_values_split_at_the_first_equals_sign_and_only_keys_are_stripped():
    assert list(key_values([" a =b ", "c=d=e", "f="], "--tag")) == [("a", "b "), ("c", "d=e"), ("f", "")]


def test_an_item_without_equals_names_the_option_and_the_item():
    with pytest.raises(ConfigError, match=r"--set expects key=value \(e.g. x=1\), got 'oops'"):
        list(key_values(["ok=1", "oops"], "--set", " (e.g. x=1)"))


def test_set_overrides_are_yaml_scalars_with_underscored_keys_and_the_last_one_wins():
    assert parse_sets(("sparsity=0.5", "layer-rate = 0.2", "seed=1", "seed=2", "scorer=magnitude")) == {
        "sparsity": 0.5,
        "layer_rate": 0.2,
        "seed": 2,
        "scorer": "magnitude",
    }
    with pytest.raises(ConfigError, match="--set expects key=value"):
        parse_sets(("sparsity",))


def test_tags_keep_raw_string_values():
    assert _tags(("nlsr.base_uri=models:/base/1", "n=1")) == {"nlsr.base_uri": "models:/base/1", "n": "1"}
    with pytest.raises(ConfigError, match="--tag expects key=value, got 'x'"):
        _tags(("x",))
