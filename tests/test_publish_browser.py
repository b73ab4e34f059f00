"""The published site in a real browser: Debian's headless Chromium driven by selenium opens it from
disk, sorts a leaderboard by clicking a column header and checks the order, and screenshots it."""

from __future__ import annotations

import io
import shutil

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
)


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_site_sorts_by_clicking_a_header_and_renders(cli, tmp_path, browser):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    out = tmp_path / "site"
    code, _, err = cli("publish", "--out", out, "--leaderboard", "s-dsen", "--leaderboard", "hi-cmd")
    assert code == 0, err
    browser.get((out / "lb-s-dsen.html").as_uri())
    table = browser.find_element(By.CSS_SELECTOR, 'table[data-dataset="rain100h"]')

    def column(index: int) -> list[float]:
        cells = table.find_elements(By.CSS_SELECTOR, f"tbody tr td:nth-child({index})")
        return [float(c.get_attribute("data-sort")) for c in cells if c.get_attribute("data-sort")]

    header = table.find_element(By.CSS_SELECTOR, "thead th:nth-child(2) button")  # PSNR
    header.click()
    ascending = column(2)
    assert len(ascending) >= 20 and ascending == sorted(ascending)
    header.send_keys(Keys.ENTER)  # keyboard: the header is a button
    descending = column(2)
    assert descending == sorted(ascending, reverse=True) and descending[0] == 27.16
    assert table.find_element(By.CSS_SELECTOR, "thead th:nth-child(2)").get_attribute("aria-sort") == "descending"
    first_row = table.find_element(By.CSS_SELECTOR, "tbody tr:first-child").text
    assert "S-DSEN" in first_row and "0.8589" in first_row

    png = browser.get_screenshot_as_png()
    (tmp_path / "leaderboard.png").write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("L")
    low, high = image.getextrema()
    assert image.size[0] >= 800 and high - low > 100  # not blank: dark text on a light page
    histogram = image.histogram()
    assert max(histogram) < 0.98 * sum(histogram)

    browser.get((out / "lb-hi-cmd.html").as_uri())
    assert "70.93" in browser.find_element(By.CSS_SELECTOR, 'table[data-dataset="regdb"]').text
