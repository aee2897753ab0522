"""Approving and rejecting from the review page, in headless Chromium under `nlsr-auth`: a manager's
click moves the alias in the registry and is recorded with their name; a reader gets no buttons and
a 403; a rejection needs a reason and leaves the alias alone.
"""

from __future__ import annotations

import pytest
import requests
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from mlflow_nlsr import lineage
from mlflow_nlsr.registry.client import RegistryClient
from mlflow_nlsr.store.repository import JobStore
from mlflow_nlsr.store.states import JobState
from tests.web.conftest import MANAGER, READER, as_user, basic, screenshot, seed

PASSING = ("asr <= 0.30", "utility >= finetuned - 0.05")


@pytest.fixture
def awaiting(auth_server, seed_dirs, tmp_path):
    """A version whose gates passed under manual promotion: its job waits for a person."""
    return seed(auth_server, seed_dirs, tmp_path, rules=PASSING, state=JobState.AWAITING_APPROVAL)


def _submit(driver, button_id: str) -> None:
    """Click a form button and wait for the page the POST redirects to (the first decision loads torch)."""
    button = driver.find_element(By.ID, button_id)
    button.click()
    WebDriverWait(driver, 120).until(lambda _: _detached(button))


def _detached(element) -> bool:
    """True once `element` left the page. Mid-navigation Chromium may report the old node as "Node with
    given id does not belong to the document" instead of a stale reference; both mean it is gone."""
    try:
        element.is_enabled()
    except WebDriverException:  # StaleElementReferenceException is one
        return True
    return False


def _alias(auth_server, name: str):
    with as_user(READER):
        return RegistryClient(auth_server.url).find_alias_version(name, "safe")


def test_a_manager_approves_and_the_alias_moves(auth_server, awaiting, chrome_driver, tmp_path):
    driver = chrome_driver(MANAGER)
    driver.get(auth_server.url + lineage.review_path(awaiting.name, awaiting.version))
    assert "awaiting-approval" in driver.find_element(By.ID, "state").text
    driver.find_element(By.NAME, "comment").send_keys("numbers look right")
    screenshot(driver, "nlsr-approval.png", tmp_path)
    _submit(driver, "approve")
    assert driver.find_element(By.ID, "state").text == "promoted"
    assert _alias(auth_server, awaiting.name).version == awaiting.realigned_version
    audit = driver.find_element(By.ID, "audit").text
    assert MANAGER[0] in audit and "numbers look right" in audit
    with JobStore(auth_server.store_url) as store:
        assert store.get(awaiting.name, awaiting.version).state is JobState.PROMOTED


def test_a_reader_sees_no_buttons_and_cannot_approve(auth_server, awaiting, chrome_driver):
    driver = chrome_driver(READER)
    driver.get(auth_server.url + lineage.review_path(awaiting.name, awaiting.version))
    assert not driver.find_elements(By.ID, "approve")
    assert "MANAGE permission" in driver.find_element(By.ID, "decision").text
    url = auth_server.url + lineage.review_path(awaiting.name, awaiting.version) + "/decision"
    resp = requests.post(url, data={"action": "approve"}, headers=basic(READER), timeout=30)
    assert resp.status_code == 403
    assert _alias(auth_server, awaiting.name) is None


def test_a_manager_rejects_with_a_reason_and_the_alias_stays(auth_server, awaiting, chrome_driver):
    driver = chrome_driver(MANAGER)
    driver.get(auth_server.url + lineage.review_path(awaiting.name, awaiting.version))
    driver.find_element(By.NAME, "comment").send_keys("utility drop too close to the limit")
    _submit(driver, "reject")
    assert driver.find_element(By.ID, "state").text == "rejected"
    assert "utility drop too close to the limit" in driver.find_element(By.ID, "verdict").text
    assert _alias(auth_server, awaiting.name) is None
