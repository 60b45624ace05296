"""The report opened in a real headless Chromium, driven over the DevTools protocol.

Chromium is started with ``--remote-debugging-pipe``: it reads protocol commands (JSON, each
terminated by a NUL byte) from file descriptor 3 and writes replies and events to descriptor 4.
That needs no package beyond the standard library. A screenshot of the full page is saved to
``test-artifacts/report.png``.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from synthetic_results import make_results

from ganstudy.report import build as report

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 60.0


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip(
        "no Chromium installed (looked for " + ", ".join(BROWSERS) + "); "
        "install it with: apt-get install -y chromium"
    )


class DevTools:
    """A minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, binary: str, profile: Path):
        cmd_read, self._cmd_write = os.pipe()
        self._res_read, res_write = os.pipe()
        # The child must find the pipe ends at exactly fds 3 and 4; copy them to free fds above
        # both first, so that moving one into place cannot overwrite the other.
        high_cmd = fcntl.fcntl(cmd_read, fcntl.F_DUPFD_CLOEXEC, 5)
        high_res = fcntl.fcntl(res_write, fcntl.F_DUPFD_CLOEXEC, 5)

        def wire_fds() -> None:
            os.dup2(high_cmd, 3)
            os.dup2(high_res, 4)

        args = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--remote-debugging-pipe",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            args,
            pass_fds=(3, 4),
            preexec_fn=wire_fds,  # noqa: PLW1509 - the test runs single-threaded here
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (cmd_read, res_write, high_cmd, high_res):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from Chromium")
            ready, _, _ = select.select([self._res_read], [], [], left)
            if ready:
                chunk = os.read(self._res_read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the debugging pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close")
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_write)
        os.close(self._res_read)


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


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The synthetic study's report, loaded in headless Chromium: (page facts, events)."""
    binary = _browser()
    root = tmp_path_factory.mktemp("browser")
    results = make_results(root)
    out = report.build_report(results, root / "reports" / "report.html")
    browser = DevTools(binary, root / "profile")
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session)
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=1280,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.send("Page.navigate", session, url=out.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        facts = json.loads(
            browser.send("Runtime.evaluate", session, expression=PAGE_CHECK, returnByValue=True)[
                "result"
            ]["value"]
        )
        shot = browser.send(
            "Page.captureScreenshot",
            session,
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": facts["width"], "height": facts["height"], "scale": 1},
        )
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "report.png").write_bytes(base64.b64decode(shot["data"]))
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
        "The question",
        "Study design",
        "Statistics: each candidate vs its baseline",
        "Provenance",
    ):
        assert title in facts["sections"]
    assert facts["details"] >= 5


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
