"""The dashboard in a real headless Chromium: `autopeft dashboard` on a free port, every page.

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium
chromium-driver``) and ``pip install selenium``; CI installs them, so their absence FAILS
this test rather than skipping it. Waits are on page content, never fixed sleeps.
Screenshots go to a temporary directory, and with ``AUTOPEFT_SAVE_SCREENSHOTS=1`` also to
``dashboard/screenshots/{pareto,trial_detail}.png`` (the README's images).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = ROOT / "dashboard" / "screenshots"
pytestmark = [pytest.mark.browser, pytest.mark.slow]  # a real Chromium and server: ~30 s

# Page -> text its header starts with; charts the page must draw.
PAGES = {
    "Studies": ("Studies", 0),
    "Pareto front": ("Pareto front - demo", 1),
    "Hypervolume": ("Hypervolume vs trials", 1),
    "Trials": ("Trials - demo", 1),
    "Importance": ("Importance - demo", 1),
    "Compare": ("Compare studies", 1),
    "Export": ("Export - demo", 0),
    "New search": ("New search", 0),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``autopeft dashboard`` on a synthetic 300-trial study (plus one to compare with)."""
    from autopeft.store import Store

    spec = importlib.util.spec_from_file_location("dashboard_render", ROOT / "benchmarks" / "dashboard_render.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    url = f"sqlite:///{tmp_path_factory.mktemp('dash-browser')}/browser.db"
    store = Store(url)
    bench.synthetic_study(store, "baseline", 120, seed=5)
    bench.synthetic_study(store, "demo", 300, seed=2)
    store.close()

    port = _free_port()
    exe = shutil.which("autopeft")
    cli = [exe] if exe else [sys.executable, "-c", "import sys; from autopeft.cli import main; sys.exit(main())"]
    log = open(tmp_path_factory.mktemp("dash-log") / "server.log", "w+")
    # Its own process group: the CLI starts Streamlit as a child, and both must stop at the end.
    proc = subprocess.Popen([*cli, "dashboard", "--storage", url, "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:  # readiness: Streamlit's health endpoint answers "ok"
        try:
            if urllib.request.urlopen(base + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"autopeft dashboard did not come up on {base}:\n{log.read()[-3000:]}")
        time.sleep(0.2)
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.seek(0)
    assert "s3cret" not in log.read()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver "
                    "(CI installs them; this test never skips)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium missing: pip install 'selenium>=4.20'")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1500,1100",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _wait_page(driver, header: str, charts: int, timeout: float = 60):
    """Wait until the page shows ``header``, its charts, and Streamlit has finished running."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from selenium.common.exceptions import StaleElementReferenceException

    # Streamlit re-renders while a page settles: an element read mid-rerun is stale, not absent.
    wait = WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: any(h.text.startswith(header) for h in d.find_elements(By.CSS_SELECTOR, '[data-testid="stHeading"]')))
    if charts:
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= charts)
    wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]'))
    exceptions = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert not exceptions, exceptions[0].text
    assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text


def _shot(driver, tmp_path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("AUTOPEFT_SAVE_SCREENSHOTS") == "1" and name in ("pareto", "trial_detail"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SHOTS / f"{name}.png")
    return path


def test_every_page_in_headless_chromium(server, browser, tmp_path):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # Pareto first: its chart is the one the issue asks to see rendered.
    browser.get(f"{server}/?page={quote('Pareto front')}&study=demo")
    _wait_page(browser, *PAGES["Pareto front"])
    legend = " ".join(e.text for e in browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .legendtext"))
    assert "Pareto front" in legend and "default LoRA" in legend
    # `autopeft dashboard` runs Streamlit with client.toolbarMode=minimal: no Deploy button
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stAppDeployButton"]')
    assert "page=pareto" in browser.current_url  # the URL names the page by its short name
    _shot(browser, tmp_path, "pareto")

    for page, (header, charts) in PAGES.items():
        if page == "Pareto front":
            continue  # seen above
        browser.get(f"{server}/?page={quote(page)}&study=demo")
        _wait_page(browser, header, charts)
        _shot(browser, tmp_path, page.lower().replace(" ", "_"))
        if page == "Trials":
            # Trial detail: scroll to the trial picker just above it (the detail's heading
            # would hide under Streamlit's top bar) so the shot shows candidate, config, curve.
            WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: any(
                h.text.startswith("Trial ") for h in d.find_elements(By.CSS_SELECTOR, '[data-testid="stHeading"]')))
            picker = browser.find_element(By.CSS_SELECTOR, '[data-testid="stMain"] [data-testid="stSelectbox"]')
            browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", picker)
            _shot(browser, tmp_path, "trial_detail")
        if page == "Export":
            # The first export imports peft and torch in the server: wait for the command to appear.
            WebDriverWait(browser, 90, ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: "autopeft export demo" in d.find_element(By.TAG_NAME, "body").text)
            assert "Download adapter_config.json" in browser.find_element(By.TAG_NAME, "body").text

    # The sidebar navigates too (a click, not only a deep link).
    label = next(e for e in browser.find_elements(By.CSS_SELECTOR, '[data-testid="stSidebar"] label')
                 if e.text.strip() == "Hypervolume")
    label.click()
    _wait_page(browser, "Hypervolume vs trials", 1)
    assert "reference" in browser.find_element(By.TAG_NAME, "body").text
    # ... and the URL follows, so the page can be bookmarked or shared
    WebDriverWait(browser, 30).until(lambda d: "page=hypervolume" in d.current_url and "study=demo" in d.current_url)
    browser.get(f"{server}/?page=trials&study=baseline")  # a short deep link opens that page
    _wait_page(browser, "Trials - baseline", 1)
    assert len(list(tmp_path.glob("*.png"))) == len(PAGES) + 1
