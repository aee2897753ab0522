"""``mlflow nlsr demo`` turns its flags into the DemoConfig of the run (the run itself: test_e2e_demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import mlflow_nlsr.demo.orchestrate as orchestrate
from mlflow_nlsr.cli.demo import demo


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Replace the run by one that records its DemoConfig and stops."""
    seen: dict[str, Any] = {}

    def fake_run_demo(config: Any, echo: Any) -> None:
        seen["config"] = config
        raise SystemExit(0)

    monkeypatch.setattr(orchestrate, "run_demo", fake_run_demo)
    return seen


def test_every_demo_flag_sets_its_config_field(seen: dict[str, Any], tmp_path: Path) -> None:
    args = ["--work-dir", str(tmp_path / "w"), "--output", str(tmp_path / "o"), "--fast", "--fresh"]
    args += ["--gate-limit", "3", "--quiet", "--sequential", "--keep-server", "--calibrate"]
    result = CliRunner().invoke(demo, args)
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert (config.work, config.output) == (tmp_path / "w", tmp_path / "o")
    assert (config.fast, config.fresh, config.gate_limit, config.keep_server) == (True, True, 3, True)
    assert (config.progress, config.parallel, config.calibrate) == (False, False, True)
    assert (config.device, config.dtype) == (None, None)


def test_the_demo_defaults_are_the_documented_dirs(seen: dict[str, Any]) -> None:
    assert CliRunner().invoke(demo, []).exit_code == 0
    config = seen["config"]
    assert (config.work, config.output) == (Path(".nlsr-demo"), Path("demo-output"))
    assert (config.progress, config.parallel, config.fast) == (True, True, False)
