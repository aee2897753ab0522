"""Web fixtures: a real `mlflow server --app-name nlsr-auth` on loopback with users, a seeded job, and
headless Chromium driven by Selenium (Debian's chromium + chromium-driver; skipped with the install
command when they are missing).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.mlflow_server import MlflowServer, running_server
from tests.web.seed import RULES, Seeded, realigned_dir, seed_job

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver"
ADMIN = ("admin", "admin-Pa55word-for-tests")
READER = ("rita-reader", "reader-Pa55word-1")
MANAGER = ("max-manager", "manager-Pa55word-1")
SECRET = "web-test-webhook-secret"


@dataclass
class AuthServer:
    server: MlflowServer
    store_url: str
    work: Path

    @property
    def url(self) -> str:
        return self.server.url


def basic(user: tuple[str, str]) -> dict[str, str]:
    token = base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def _auth_ini(root: Path) -> Path:
    ini = root / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN[0]}\n"
        f"admin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # each page reads ~5 things through MLflow's REST routes, each checking the password (PBKDF2):
        # the cache docs/registry.md recommends for nlsr-auth
        "auth_cache_ttl_seconds = 60\n"
    )
    return ini


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory) -> AuthServer:
    """`mlflow server --app-name nlsr-auth` with an admin, a READ-only reader and a manager user."""
    pytest.importorskip("flask_wtf", reason="needs the auth extra: pip install -e '.[auth]'")
    root = tmp_path_factory.mktemp("web-server")
    store_url = f"sqlite:///{root / 'jobs.db'}"
    env = {
        "NLSR_STORE_URL": store_url, "NLSR_WORK_DIR": str(root / "w"), "NLSR_WEBHOOK_SECRET": SECRET,
        "MLFLOW_AUTH_CONFIG_PATH": str(_auth_ini(root)), "MLFLOW_FLASK_SERVER_SECRET_KEY": uuid.uuid4().hex,
    }  # fmt: skip
    with running_server(root, app_name="nlsr-auth", extra_env=env) as srv:
        for user in (READER, MANAGER):
            resp = requests.post(
                f"{srv.url}/api/2.0/mlflow/users/create",
                json={"username": user[0], "password": user[1]}, headers=basic(ADMIN), timeout=30,
            )  # fmt: skip
            assert resp.status_code == 200, resp.text
        grant = {"username": MANAGER[0], "resource_type": "experiment", "resource_id": "0"}
        grant["permission"] = "EDIT"
        resp = requests.post(  # the manager logs models in the Default experiment (and so owns them)
            f"{srv.url}/api/3.0/mlflow/users/permissions/grant", json=grant, headers=basic(ADMIN), timeout=30
        )
        assert resp.status_code == 200, resp.text
        yield AuthServer(srv, store_url, root / "w")


@pytest.fixture(scope="session")
def seed_dirs(tmp_path_factory) -> tuple[Path, ...]:
    """(base, aligned, finetuned, realigned) of one real tiny realignment."""
    return realigned_dir(tmp_path_factory.mktemp("web-seed"))


@contextlib.contextmanager
def as_user(user: tuple[str, str]) -> Iterator[None]:
    """MLflow client calls in this block authenticate as `user`."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    mp.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
    try:
        yield
    finally:
        mp.undo()


def seed(auth_server: AuthServer, dirs: tuple[Path, ...], work: Path, **kw) -> Seeded:
    """Register a fine-tuned version as the manager through the server and record its job (seed.seed_job)."""
    from mlflow_nlsr.registry.client import RegistryClient
    from mlflow_nlsr.store.repository import JobStore

    with as_user(MANAGER), JobStore(auth_server.store_url) as store:
        return seed_job(
            RegistryClient(auth_server.url), store, f"web-{uuid.uuid4().hex[:6]}", dirs, work, **kw
        )


@pytest.fixture(scope="session")
def seeded(auth_server, seed_dirs, tmp_path_factory) -> Seeded:
    """A fine-tuned version registered by the manager through the server and rejected by its gates."""
    from mlflow_nlsr.store.states import JobState

    return seed(
        auth_server, seed_dirs, tmp_path_factory.mktemp("rejected"), rules=RULES, state=JobState.REJECTED
    )


@pytest.fixture(scope="session")
def chrome_driver():
    """Headless Chromium, one session per user (sending that user's Basic credentials; None: anonymous)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) and not shutil.which("chromedriver"):
        pytest.skip(f"headless Chromium is missing; install it with: {INSTALL}")
    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[dev]' (selenium)")
    from selenium.webdriver.chrome.service import Service

    drivers: dict[tuple[str, str] | None, object] = {}

    def make(user: tuple[str, str] | None = None):
        if user in drivers:
            return drivers[user]
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        drivers[user] = driver
        if user is not None:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": basic(user)})
        return driver

    yield make
    for driver in drivers.values():
        driver.quit()  # type: ignore[attr-defined]


def screenshot(driver, name: str, tmp_path: Path) -> None:
    """Save a full-page screenshot to tmp_path, or to $NLSR_WEB_SCREENSHOTS (docs/img: the README's)."""
    folder = Path(os.environ.get("NLSR_WEB_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, min(max(height + 40, 600), 4000))
    assert driver.save_screenshot(str(folder / name))
    driver.set_window_size(1280, 1600)
