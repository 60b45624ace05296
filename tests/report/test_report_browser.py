"""The report opened in a real headless Chromium (see ``tests/browser.py``); a screenshot of the
full page is saved to ``test-artifacts/report.png``."""

from __future__ import annotations

import json

import pytest
from browser import ARTIFACTS, DevTools, evaluate, find_browser, open_page, screenshot
from synthetic_results import make_results

from ganstudy.report import build as report

PAGE_CHECK = """(() => {
  const imgs = [...document.images];
  return JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
    external: imgs.filter(i => !i.src.startsWith('data:')).map(i => i.src),
    tables: document.querySelectorAll('table').length,
    sections: [...document.querySelectorAll('h2')].map(h => h.textContent),
    details: document.querySelectorAll('details').length,
    width: document.documentElement.scrollWidth,
    height: document.documentElement.scrollHeight,
  });
})()"""


# One pytest-xdist worker runs the whole module, so its report in Chromium is built once, not once
# per worker.
pytestmark = pytest.mark.xdist_group("test_report_browser")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The synthetic study's report, loaded in headless Chromium: (page facts, events)."""
    binary = find_browser()
    root = tmp_path_factory.mktemp("browser")
    results = make_results(root)
    out = report.build_report(results, root / "reports" / "report.html")
    browser = DevTools(binary, root / "profile")
    try:
        session = open_page(browser, out.resolve().as_uri())
        facts = json.loads(evaluate(browser, session, PAGE_CHECK))
        clip = {"x": 0, "y": 0, "width": facts["width"], "height": facts["height"], "scale": 1}
        screenshot(browser, session, "report.png", clip)
        events = list(browser.events)
    finally:
        browser.close()
    return facts, events


def test_every_image_loads(rendered):
    facts, _ = rendered
    assert facts["images"] >= 10
    assert facts["broken"] == []
    assert facts["external"] == []


def test_tables_and_sections_present(rendered):
    facts, _ = rendered
    assert facts["tables"] >= 8
    for title in (
        "The answer",
        "The question",
        "Study design",
        "Secondary comparisons (exploratory): each candidate vs its baseline, per cell",
        "Provenance",
    ):
        assert title in facts["sections"]
    assert facts["details"] >= 5
    # Wide tables scroll in their own box: the page itself never scrolls sideways.
    assert facts["width"] <= 1280


def test_no_console_errors_and_no_network(rendered):
    _, events = rendered
    errors = [
        e
        for e in events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    assert errors == []
    requested = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
    ]
    assert requested, "the page load itself should be seen by the Network domain"
    assert all(url.startswith(("file:", "data:")) for url in requested), requested


def test_screenshot_saved(rendered):
    shot = ARTIFACTS / "report.png"
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert shot.stat().st_size > 10_000
