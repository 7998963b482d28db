"""The page at / in a real browser: headless Chromium driven by Selenium.

Chromium and its driver come from Debian's packages (``.ci/run`` installs
them); the test is skipped, saying so, only where they are absent.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._http_helpers import serving_yard

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TIMEOUT = 30.0

pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="needs Debian's chromium and chromium-driver (apt-get install "
    "chromium chromium-driver; .ci/run installs them)",
)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium with a fresh profile, quit after the test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_the_page_adds_a_graph_from_the_tree_and_it_loads(
    tmp_path: Path, browser: Any
) -> None:
    """Click through the tree to a series; its graph's image loads with a size."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    now = int(time.time()) // 60 * 60
    points = [
        (
            "servers.web1.cpu",
            "graphite",
            50 + 40 * math.sin(i / 6),
            (now - 60 * i) * 1000,
        )
        for i in range(50)
    ]
    with serving_yard(tmp_path / "data", points) as (_yard, client):
        wait = WebDriverWait(browser, TIMEOUT)
        browser.get(client.base + "/")

        def click(node_id: str) -> None:
            locator = (By.CSS_SELECTOR, f'.node[data-id="{node_id}"]')
            wait.until(ec.element_to_be_clickable(locator)).click()

        click("servers")
        click("servers.web1")
        click("servers.web1.cpu")
        image = wait.until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "#graphs figure img"))
        )
        wait.until(
            lambda driver: driver.execute_script(
                "const i = arguments[0]; return i.complete && i.naturalWidth > 0;",
                image,
            )
        )
        width, height = browser.execute_script(
            "const i = arguments[0]; return [i.naturalWidth, i.naturalHeight];",
            image,
        )
        source = image.get_attribute("src")
        browser.save_screenshot(str(tmp_path / "page.png"))
    assert width >= 300
    assert height == 300
    assert source is not None
    assert "/render?target=servers.web1.cpu" in source
    assert "format=png" in source
    assert (tmp_path / "page.png").stat().st_size > 0
