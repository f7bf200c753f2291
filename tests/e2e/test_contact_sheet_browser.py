"""The run's contact sheet as a person sees it: a real headless Chromium opens it from disk.

Driven through WebDriver (Selenium with Debian's chromedriver, which is built from the same
source as Debian's chromium, so the two always match; .ci/run installs both). The browser loads
only file:// pages under the test's temp folder: every host name resolves to nothing, and the
test checks that no resource came from anywhere else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collage_tools.cli import main
from tests.support.workflow import csv_text

pytestmark = pytest.mark.e2e

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
HOSTILE = "<img src=x onerror=alert(1)>"
PAGE_SIZE = 5  # entries a page here, so a dozen creators make several pages


def chromium_options(profile: Path) -> Any:
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing leaves the machine
        "--window-size=1280,1400",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    return options


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "needs Debian's chromium and chromium-driver "
            "(.ci/run installs them: apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # An explicit driver path: Selenium never looks for (or downloads) one of its own.
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=chromium_options(tmp_path / "profile"))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def run_to_disk(tmp_path: Path, covers: list[str], cover_server: Any, capsys: Any) -> Path:
    """An e2e run (`collage run`) of a dozen creators, one failed and one partial, to disk."""
    missing = cover_server.url("/c/missing.jpg")
    rows = [("dead", missing, "2025-01-02"), ("dead", missing + "?2", "2025-01-01")]
    rows += [("bob", covers[0], "2025-01-02"), ("bob", missing + "?b", "2025-01-01")]
    rows.append((HOSTILE, covers[1], "2025-01-01"))
    rows += [(f"creator {n:02d}", covers[2 + n], "2025-01-01") for n in range(10)]
    rows.append(("eve", "ftp://cdn.example/x.jpg", ""))  # a rejected row (line 17)
    source = tmp_path / "covers.csv"
    source.write_text(csv_text(rows))
    out = tmp_path / "out"
    assert main(["run", str(source), "--out", str(out), "--allow-loopback"]) == 0
    summary = json.loads(capsys.readouterr().out)
    return out / summary["sheet"].split("/", 3)[3]


def page_state(driver: Any) -> dict[str, Any]:
    return dict(
        driver.execute_script(
            """
            const images = Array.from(document.images);
            return {
              totals: Object.fromEntries(Array.from(document.querySelectorAll('[data-total]'))
                .map(cell => [cell.dataset.total, cell.textContent])),
              problems: Array.from(document.querySelectorAll('li.problem')).map(li => ({
                status: li.dataset.status, creator: li.querySelector('.creator').textContent,
                text: li.textContent})),
              gallery: Array.from(document.querySelectorAll('li.entry .creator'))
                .map(el => el.textContent),
              images: images.map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
              resources: performance.getEntriesByType('resource').map(r => r.name),
              at: document.querySelector('nav .at').textContent,
              next: document.querySelector('nav a.next') ? true : false,
            };
            """
        )
    )


def no_dialog(driver: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert  # noqa: B018 (the lookup itself raises when there is none)
    except NoAlertPresentException:
        return True
    return False


def test_the_contact_sheet_shows_a_run_in_a_real_browser(
    tmp_path, covers, cover_server, capsys, monkeypatch, browser
):
    # The aggregate runs in a worker process of the local Lambda runtime, which inherits this.
    monkeypatch.setenv("COLLAGE_SHEET_PAGE_SIZE", str(PAGE_SIZE))
    monkeypatch.setattr("collage.sheet.PAGE_SIZE", PAGE_SIZE)
    sheet = run_to_disk(tmp_path, covers, cover_server, capsys)
    report = json.loads(sheet.with_suffix(".json").read_text())
    creators_in_csv_order = [record["creator"] for record in report["creators"]]

    browser.get(sheet.as_uri())
    first = page_state(browser)
    screenshot = tmp_path / "contact-sheet.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000

    # The totals shown are the report's.
    shown = {path: int(value.replace(",", "")) for path, value in first["totals"].items()}
    expected = {
        f"{group}.{name}": value
        for group, values in report["totals"].items()
        for name, value in (values.items() if isinstance(values, dict) else [("", values)])
    }
    expected = {path.rstrip("."): value for path, value in expected.items()}
    assert shown == expected
    assert shown["creators.failed"] == 1 and shown["creators.partial"] == 1
    assert shown["rows.rejected"] == 1
    # The rejected row: its line, column and value.
    rejected = browser.find_element("css selector", "table.row-issues").text
    assert "17 cover_url ftp://cdn.example/x.jpg" in rejected

    # The failed creator comes first, with why; then the partial one, with its failed cover.
    dead, bob = first["problems"][:2]
    assert (dead["status"], dead["creator"]) == ("failed", "dead")
    assert "no cover could be rendered" in dead["text"] and "http_status" in dead["text"]
    # Each failed cover: its CSV line, its URL (the query never shown), its code.
    assert f"line 2: {cover_server.url('/c/missing.jpg')} http_status" in dead["text"]
    assert f"line 3: {cover_server.url('/c/missing.jpg')}?… http_status" in dead["text"]
    assert (bob["status"], bob["creator"]) == ("partial", "bob") and "http_status" in bob["text"]

    # Page after page to the last creator: every thumbnail loads, the hostile name is text,
    # nothing but files from the run's folder is loaded, no dialog ever opens.
    gallery, pages, folder = [], [], sheet.parent.as_uri()
    state = first
    while True:
        assert no_dialog(browser)
        pages.append(state["at"])
        gallery += state["gallery"]
        assert all(done and width > 0 for _, done, width in state["images"]), state["images"]
        assert all(name.startswith(folder) for name in state["resources"]), state["resources"]
        assert not browser.find_elements("css selector", "img[src=x]")
        if not state["next"]:
            break
        browser.find_element("css selector", "nav a.next").click()
        state = page_state(browser)
    assert gallery == creators_in_csv_order  # every creator once, in CSV order
    assert gallery[-1] == "creator 09" and HOSTILE in gallery
    thumbnails = sum(1 for record in report["creators"] if record["thumbnail"])
    assert thumbnails == len(creators_in_csv_order) - 1  # all but the failed creator
    entries = 2 + len(creators_in_csv_order)  # two problems, then every creator
    count = -(-entries // PAGE_SIZE)
    assert pages == [f"page {n} of {count}" for n in range(1, count + 1)]

    # The hostile name's thumbnail (on page 1) links to its collage, which opens.
    browser.get(sheet.as_uri())
    (entry,) = [
        li
        for li in browser.find_elements("css selector", "li.entry")
        if li.find_element("css selector", ".creator").text == HOSTILE
    ]
    entry.find_element("css selector", "a").click()
    assert no_dialog(browser)
    (collage,) = [r["collages"][0] for r in report["creators"] if r["creator"] == HOSTILE]
    assert browser.current_url == (sheet.parent / Path(collage).name).as_uri()
    assert browser.execute_script("return document.images[0].naturalWidth") > 1000
