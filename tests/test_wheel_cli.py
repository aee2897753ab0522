"""`mlflow nlsr …` works from a wheel installed into a fresh virtual environment.

The fresh venv sees the project's dependencies through a .pth file pointing at the development
venv's site-packages (nothing is downloaded), but mlflow-nlsr itself comes only from the built wheel.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],
        check=True,
        cwd=tmp,
    )
    wheel = next(dist.glob("mlflow_nlsr-*.whl"))
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
        check=True,
    )
    return env_dir, wheel


def _run(env_dir: Path, *args: str) -> subprocess.CompletedProcess:
    # cwd outside the checkout: otherwise '' on sys.path would import the source tree, not the wheel
    return subprocess.run(
        [str(env_dir / "bin" / args[0]), *args[1:]], capture_output=True, text=True, cwd=env_dir
    )


def test_wheel_installs_mlflow_nlsr_from_its_own_files(fresh_venv):
    env_dir, _ = fresh_venv
    out = _run(env_dir, "python", "-c", "import mlflow_nlsr; print(mlflow_nlsr.__file__)").stdout
    assert str(env_dir) in out


def test_mlflow_cli_gains_the_nlsr_group_from_the_wheel(fresh_venv):
    env_dir, _ = fresh_venv
    res = _run(env_dir, "python", "-m", "mlflow", "nlsr", "--help")
    assert res.returncode == 0, res.stderr
    assert "Neuron-Level Safety Realignment" in res.stdout
    top = _run(env_dir, "python", "-m", "mlflow", "--help")
    assert "nlsr" in top.stdout


def test_console_script_mlflow_nlsr_is_installed(fresh_venv):
    env_dir, _ = fresh_venv
    res = _run(env_dir, "mlflow-nlsr", "--help")
    assert res.returncode == 0, res.stderr
    assert "Usage: mlflow-nlsr" in res.stdout


def test_wheel_ships_the_package_data(fresh_venv):
    import zipfile

    _, wheel = fresh_venv
    names = zipfile.ZipFile(wheel).namelist()
    assert (
        any(n.endswith("store/migrations/env.py") for n in names)
        or not (ROOT / "mlflow_nlsr/store/migrations/env.py").exists()
    )
    for data in (ROOT / "mlflow_nlsr").rglob("*.jsonl"):
        rel = data.relative_to(ROOT).as_posix()
        assert rel in names, f"{rel} missing from the wheel"
