"""A reviewer, in a real headless Chromium against `mlflow server --app-name nlsr-auth`, finds on the
NLSR pages why a version was rejected, who registered it and what would fix it; MLflow's login guards
every page, a reader cannot decide, and the webhook stays reachable with its HMAC signature alone.
"""

from __future__ import annotations

import json
import time

import requests
from selenium.webdriver.common.by import By

from mlflow_nlsr import lineage
from mlflow_nlsr.registry import webhook as W
from tests.web.conftest import ADMIN, MANAGER, READER, SECRET, basic, screenshot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _version_path(seeded) -> str:
    return lineage.review_path(seeded.name, seeded.version)


def test_the_jobs_list_shows_the_processed_registration(auth_server, seeded, chrome_driver, tmp_path):
    driver = chrome_driver(MANAGER)
    driver.get(f"{auth_server.url}/nlsr/?model={seeded.name}")
    rows = driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
    assert len(rows) == 1
    text = rows[0].text
    assert f"{seeded.name} v{seeded.version}" in text
    assert "rejected" in text and "app" in text and f"mlflow-user:{MANAGER[0]}" in text
    assert f"v{seeded.realigned_version}" in text
    assert "signed in as" in driver.find_element(By.TAG_NAME, "header").text
    screenshot(driver, "nlsr-jobs.png", tmp_path)


def test_the_state_filter_hides_jobs_in_other_states(auth_server, seeded, chrome_driver):
    driver = chrome_driver(MANAGER)
    driver.get(f"{auth_server.url}/nlsr/?model={seeded.name}&state=promoted")
    assert "No jobs match." in driver.find_element(By.ID, "jobs").text
    driver.get(f"{auth_server.url}/nlsr/?model={seeded.name}&state=rejected")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr a")) == 1


def test_the_version_page_answers_why_who_and_what_would_fix_it(auth_server, seeded, chrome_driver, tmp_path):
    driver = chrome_driver(READER)
    driver.get(f"{auth_server.url}/nlsr/?model={seeded.name}")
    driver.find_element(By.LINK_TEXT, f"{seeded.name} v{seeded.version}").click()
    verdict = driver.find_element(By.ID, "verdict").text
    assert "Gates FAILED" in verdict and "rejected" in verdict
    assert "What would fix it" in verdict and "asr must be lower by at least" in verdict
    assert f"mlflow-user:{MANAGER[0]}" in driver.find_element(By.ID, "who").text
    rules = driver.find_element(By.ID, "rules").text
    assert "asr <= 0.10" in rules and "-0.1500" in rules and "FAIL" in rules and "pass" in rules
    metrics = driver.find_element(By.ID, "metrics").text
    assert "nlsr_harmful" in metrics and "95 % [" in metrics and "40" in metrics
    lineage_text = driver.find_element(By.ID, "lineage").text
    assert "output sha256" in lineage_text and "not shown" not in lineage_text
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#lineage a")]
    assert f"{auth_server.url}/#/models/{seeded.name}/versions/{seeded.realigned_version}" in links
    audit = driver.find_element(By.ID, "audit").text
    assert "enqueued" in audit and "claimed" in audit and "rejected" in audit
    assert not driver.find_elements(By.ID, "approve")
    screenshot(driver, "nlsr-version.png", tmp_path)


def test_the_similarity_plot_loads_as_a_png(auth_server, seeded, chrome_driver):
    driver = chrome_driver(READER)
    driver.get(auth_server.url + _version_path(seeded))
    img = driver.find_element(By.ID, "similarity")
    deadline = time.monotonic() + 20
    while not driver.execute_script("return arguments[0].complete", img) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert driver.execute_script("return arguments[0].naturalWidth", img) > 100
    resp = requests.get(img.get_attribute("src"), headers=basic(READER), timeout=30)
    assert resp.status_code == 200 and resp.content.startswith(PNG_MAGIC) and len(resp.content) > 1000


def test_the_realigned_versions_model_card_links_to_the_review_page(auth_server, seeded, chrome_driver):
    resp = requests.get(
        f"{auth_server.url}/api/2.0/mlflow/model-versions/get",
        params={"name": seeded.name, "version": seeded.realigned_version}, headers=basic(READER), timeout=30,
    )  # fmt: skip
    assert f"]({_version_path(seeded)})" in resp.json()["model_version"]["description"]
    driver = chrome_driver(READER)
    driver.get(f"{auth_server.url}/nlsr/models/{seeded.name}/versions/{seeded.realigned_version}")
    assert driver.current_url == auth_server.url + _version_path(seeded)


def test_an_anonymous_visitor_is_refused_every_nlsr_page(auth_server, seeded, chrome_driver):
    for path in ("/nlsr/", _version_path(seeded), "/nlsr/health"):
        resp = requests.get(auth_server.url + path, timeout=30, allow_redirects=False)
        assert resp.status_code == 401, path
        assert resp.headers["WWW-Authenticate"].startswith("Basic")
    driver = chrome_driver()
    driver.get(auth_server.url + _version_path(seeded))
    source = driver.page_source  # Chromium waits at its login prompt: nothing of the page is shown
    assert "Gates FAILED" not in source and "Audit trail" not in source and seeded.name not in source


def test_wrong_credentials_are_refused(auth_server):
    resp = requests.get(f"{auth_server.url}/nlsr/", headers=basic((READER[0], "wrong")), timeout=30)
    assert resp.status_code == 401


def test_a_reader_cannot_approve_or_reject(auth_server, seeded):
    url = auth_server.url + _version_path(seeded) + "/decision"
    for action in ("approve", "reject"):
        resp = requests.post(url, data={"action": action, "comment": "no"}, headers=basic(READER), timeout=30)
        assert resp.status_code == 403


def test_a_decision_without_the_forms_csrf_token_is_refused(auth_server, seeded):
    url = auth_server.url + _version_path(seeded) + "/decision"
    resp = requests.post(url, data={"action": "approve"}, headers=basic(ADMIN), timeout=30)
    assert resp.status_code == 400 and "CSRF" in resp.text


def test_the_webhook_needs_its_signature_not_a_login(auth_server):
    body = json.dumps(
        {"entity": "registered_model", "action": "created", "timestamp": "t", "data": {}}
    ).encode()
    did, ts = "web-test-delivery", int(time.time())
    headers = {
        "Content-Type": "application/json", W.DELIVERY_ID_HEADER: did, W.TIMESTAMP_HEADER: str(ts),
        W.SIGNATURE_HEADER: W.sign(SECRET, did, ts, body),
    }  # fmt: skip
    signed = requests.post(f"{auth_server.url}/nlsr/webhook", data=body, headers=headers, timeout=30)
    assert signed.status_code == 200, signed.text
    headers[W.SIGNATURE_HEADER] = W.sign("not-the-secret", did + "x", ts, body)
    headers[W.DELIVERY_ID_HEADER] = did + "x"
    forged = requests.post(f"{auth_server.url}/nlsr/webhook", data=body, headers=headers, timeout=30)
    assert forged.status_code == 401 and "HMAC" in forged.text


def test_mlflow_itself_still_requires_the_login(auth_server):
    resp = requests.get(f"{auth_server.url}/api/2.0/mlflow/registered-models/search", timeout=30)
    assert resp.status_code == 401
