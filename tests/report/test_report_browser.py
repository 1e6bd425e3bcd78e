"""Real reports in headless Chromium: no console errors, no request leaving the file, the key
sections visible, every embedded image decoded, no sideways scrolling on a phone, and a
screenshot that is not blank.

Needs the Debian packages `chromium` and `chromium-driver` (`make test` installs them where it
can) and the Python package selenium (dev extras); without them the tests skip and say which
one is missing.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixlearn.report import write_report

from .test_report import CLASSIFY_SECTIONS, COMPARE_SECTIONS, FIELD_SECTIONS, classification_run, compare_run, field_run

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LAPTOP = (1280, 900)
PHONE = (390, 844)


def _missing_browser_parts() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the Python package selenium is not installed (pip install -e '.[dev]')"
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return "no Chromium binary on PATH (Debian: apt-get install chromium; `make test` tries this)"
    if not shutil.which("chromedriver"):
        return "no chromedriver on PATH (Debian: apt-get install chromium-driver; `make test` tries this)"
    return None


pytestmark = pytest.mark.skipif(_missing_browser_parts() is not None, reason=str(_missing_browser_parts()))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.binary_location = next(shutil.which(n) for n in CHROMIUM_NAMES if shutil.which(n))
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def reports(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser-reports")
    runs = {
        "classify": classification_run(trained_run, root / "classify"),
        "field": field_run(root / "fit", heldout=True),
        "compare": compare_run(root / "compare"),
    }
    return {kind: write_report(run) for kind, run in runs.items()}


def load(driver, path: Path, size: tuple[int, int] = LAPTOP) -> list[str]:
    """Open `path` at a window size; return the URL of every request the page made."""
    driver.get("about:blank")
    driver.set_window_size(*size)
    driver.get_log("performance")  # drop what the browser did before this page
    driver.get_log("browser")
    driver.get(path.resolve().as_uri())
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            requests.append(message["params"]["request"]["url"])
    return requests


SECTIONS = {"classify": CLASSIFY_SECTIONS, "field": FIELD_SECTIONS, "compare": COMPARE_SECTIONS}


@pytest.mark.parametrize("kind", ["classify", "field", "compare"])
def test_report_renders_offline_without_errors(browser, reports: dict[str, Path], kind: str) -> None:
    from selenium.webdriver.common.by import By

    path = reports[kind]
    requests = load(browser, path)
    assert path.resolve().as_uri() in requests
    outside = [url for url in requests if url != path.resolve().as_uri() and not url.startswith("data:")]
    assert outside == []
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
    for ident in SECTIONS[kind]:
        element = browser.find_element(By.ID, ident)
        assert element.is_displayed(), ident
        assert element.find_element(By.TAG_NAME, "h2").text.strip(), ident
    decoded = browser.execute_script(
        "return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0 && i.alt.length > 0)"
    )
    assert decoded and all(decoded)


@pytest.mark.parametrize("kind", ["classify", "field"])
def test_chart_points_carry_their_values(browser, reports: dict[str, Path], kind: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    load(browser, reports[kind])
    chart = browser.find_element(By.ID, "chart-loss")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", chart)
    point = chart.find_element(By.CSS_SELECTOR, "g.pt circle.dot")  # the first point of the first series
    ActionChains(browser).move_to_element(point).perform()
    # Another series' point may lie over this one; whichever is under the pointer must show step/epoch 1.
    hovered = chart.find_elements(By.CSS_SELECTOR, "g.pt:hover")
    assert len(hovered) == 1
    dot = hovered[0].find_element(By.CSS_SELECTOR, "circle.dot")
    assert browser.execute_script("return getComputedStyle(arguments[0]).r", dot) == "6px"  # grown under the pointer
    tip = hovered[0].find_element(By.TAG_NAME, "title").get_attribute("textContent")
    assert ("epoch 1:" if kind == "classify" else "step 1:") in tip and "loss" in tip


@pytest.mark.parametrize("kind", ["classify", "field", "compare"])
def test_report_fits_a_phone_and_is_not_blank(browser, reports: dict[str, Path], kind: str) -> None:
    load(browser, reports[kind], PHONE)
    page_width = browser.execute_script("return document.documentElement.scrollWidth")
    view_width = browser.execute_script("return window.innerWidth")
    assert page_width <= view_width  # wide tables scroll inside their own box, not the page
    shot = np.asarray(Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("L"), dtype=np.float64)
    assert shot.shape[0] > 300 and shot.std() > 10  # text and figures, not an empty page
    assert (shot < 128).mean() > 0.005  # some dark ink: the heading and text rendered
