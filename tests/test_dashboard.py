"""GET /: the dashboard, in a real headless browser and through the test client."""

import base64
import os
import shutil
import time

import pytest
import requests
from support import ROOT, app_process

TOKEN = "dashboard-token-0123456789"
ARTIFACTS = ROOT / "test-artifacts"


def basic(password, user="anyone"):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_page_shows_the_figures_of_the_stats(client, telnyx, webhooks):
    client.post("/sms/send", json={"to": "+13125550147", "message": "Hi"})

    page = client.get("/")

    assert page.status_code == 200
    assert page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert 'data-status="queued" data-count="1"' in html
    # Nothing is fetched from elsewhere: the page works offline.
    assert "src=" not in html
    assert 'href="http' not in html and "//" not in html.split("<body>")[0]


def test_page_filter_answers_only_that_status(client, telnyx):
    client.post("/sms/send", json={"to": "+13125550147", "message": "Hi"})

    html = client.get("/?status=delivered").get_data(as_text=True)

    assert 'class="message"' not in html
    assert "No messages with status delivered" in html


def test_browser_is_asked_for_the_token_as_a_password(make_app):
    client = make_app(API_TOKEN=TOKEN).test_client()

    asked = client.get("/")
    opened = client.get("/", headers={"Authorization": basic(TOKEN)})
    detail = client.get("/messages", headers={"Authorization": basic(TOKEN)})
    wrong = client.get("/", headers={"Authorization": basic("guess")})

    assert asked.status_code == 401
    assert asked.headers["WWW-Authenticate"].startswith("Basic")
    assert (opened.status_code, detail.status_code, wrong.status_code) == (
        200,
        200,
        401,
    )


# In a real browser


def chromium():
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if None in found:
        reason = "Debian's chromium and chromium-driver are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the browser test")
        pytest.skip(reason)
    return found


@pytest.fixture
def browser(tmp_path):
    binary, driver_path = chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,1400",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def sandbox(tmp_path):
    """The sandbox with a delivered, two failed and an unconfirmed message."""
    service = app_process(tmp_path, "--sandbox")
    for to in ["+13125550147", "+13125550101", "+13125550102", "+13125550103"]:
        requests.post(
            f"{service.url}/sms/send", json={"to": to, "message": "Hi"}, timeout=10
        ).raise_for_status()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        stats = requests.get(f"{service.url}/stats", timeout=10).json()
        if stats["final"] == 4:
            break
        time.sleep(0.2)
    yield service, stats
    service.stop()


def test_dashboard_in_a_real_browser(browser, sandbox):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    service, stats = sandbox
    browser.get(service.url + "/")
    browser.execute_script("window.loadedOnce = true;")

    headline = browser.find_element(By.CSS_SELECTOR, "#headline .headline")
    assert float(headline.get_attribute("data-rate")) == stats["delivery_rate"]
    assert "25.0%" in headline.text
    bars = {
        row.get_attribute("data-status"): int(row.get_attribute("data-count"))
        for row in browser.find_elements(By.CSS_SELECTOR, "#statuses .bar-row")
    }
    assert bars == stats["by_status"]
    (day,) = browser.find_elements(By.CSS_SELECTOR, "#daily g.day")
    assert (day.get_attribute("data-delivered"), day.get_attribute("data-failed")) == (
        "1",
        "2",
    )
    codes = [
        row.get_attribute("data-code")
        for row in browser.find_elements(By.CSS_SELECTOR, "#failures tbody tr")
    ]
    assert sorted(codes) == ["40001", "40008"]
    assert (
        "The carrier could not deliver it."
        in browser.find_element(By.ID, "failures").text
    )

    Select(browser.find_element(By.ID, "status-filter")).select_by_value("failed")
    WebDriverWait(browser, 10).until(
        lambda driver: (
            {
                row.get_attribute("data-status")
                for row in driver.find_elements(By.CSS_SELECTOR, "tr.message")
            }
            == {"delivery_failed", "sending_failed"}
        )
    )
    # Filtered in place: the page was not loaded again.
    assert browser.execute_script("return window.loadedOnce === true;")
    assert browser.current_url.endswith("/?status=failed")

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
    errors = [
        entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"
    ]
    assert errors == []


def test_dashboard_is_readable_on_a_phone(browser, sandbox):
    service, _ = sandbox
    browser.set_window_size(390, 844)
    browser.get(service.url + "/")

    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth > window.innerWidth + 1;"
    )

    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "dashboard-phone.png"))
    assert overflow is False
