"""Headless Chromium driven over the DevTools protocol on a pipe (stdlib only).

Used by the report tests (load a page offline, collect console errors and network requests,
take pixel screenshots, query the DOM) and by ``medcl ecg report --pdf`` (print to PDF). Chromium
is started with ``--remote-debugging-pipe``: commands go to its file descriptor 3 and replies come
from descriptor 4 as NUL-terminated JSON messages.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medcl.errors import MedclError

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome", "headless_shell")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
    "--no-default-browser-check", "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable (``$MEDCL_CHROMIUM`` first), or None."""
    env = os.environ.get("MEDCL_CHROMIUM")
    if env:
        return shutil.which(env) or (env if Path(env).is_file() else None)
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


@dataclass
class PageLog:
    """What a page did while loading: console errors (CSP violations included) and requests."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def network_requests(self, page_url: str) -> list[str]:
        """Requested URLs other than the page itself and inline ``data:`` resources."""
        return [u for u in self.requests if u != page_url and not u.startswith(("data:", "about:"))]


class _Pipe:
    """NUL-delimited JSON messages over the two DevTools pipe descriptors."""

    def __init__(self, write_fd: int, read_fd: int) -> None:
        self.write_fd, self.read_fd, self.buffer = write_fd, read_fd, b""

    def send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.write_fd, data):]

    def receive(self, deadline: float) -> dict:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.read_fd], [], [], left)[0]:
                raise TimeoutError("no reply from chromium")
            chunk = os.read(self.read_fd, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed the DevTools pipe")
            self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)


class Chromium:
    """A headless Chromium process; use as a context manager.

    Args:
        executable: browser path (default :func:`find_chromium`).
        timeout: seconds allowed for each protocol command and page load.
    """

    def __init__(self, executable: str | None = None, timeout: float = 60.0) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise MedclError("chromium: no headless Chromium found (install Debian's 'chromium' or set MEDCL_CHROMIUM)")
        self.executable, self.timeout = exe, timeout
        self._next_id = 0
        self._events: list[dict] = []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="medcl-chromium-")
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()

        def wire_fds() -> None:
            # Runs in the child: the pipe ends become inheritable descriptors 3 and 4 (moved above
            # 10 first so neither lands on the other's target); every other descriptor Python
            # opened is non-inheritable (PEP 446) and closes at exec.
            a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD_CLOEXEC, 10)
            b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(a, 3, inheritable=True)
            os.dup2(b, 4, inheritable=True)

        args = [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"]
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argument list
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire_fds,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.pipe = _Pipe(to_child_w, from_child_r)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.send("Browser.close")
        except (OSError, TimeoutError, ConnectionError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.pipe.write_fd)
        os.close(self.pipe.read_fd)
        self._profile.cleanup()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one DevTools command and return its result (events seen meanwhile are kept)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.pipe.send(message)
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self.pipe.receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"chromium: {method} failed: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_event(self, method: str, session: str) -> dict:
        """Block until the event ``method`` arrives for ``session``."""
        deadline = time.monotonic() + self.timeout
        while True:
            for k, ev in enumerate(self._events):
                if ev.get("method") == method and ev.get("sessionId") == session:
                    return self._events.pop(k)
            self._events.append(self.pipe.receive(deadline))

    def open(self, path: str | Path, width: int = 1400, height: int = 1000) -> Page:
        """Load a local HTML file in a new tab of ``width`` x ``height`` CSS pixels; waits for ``load``."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
        url = Path(path).resolve().as_uri()
        self.send("Page.navigate", {"url": url}, session)
        self.wait_event("Page.loadEventFired", session)
        page = Page(self, session, url)
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", wait=True)
        return page


class Page:
    """A loaded tab: screenshots, DOM queries, PDF and the load log."""

    def __init__(self, browser: Chromium, session: str, url: str) -> None:
        self.browser, self.session, self.url = browser, session, url

    def evaluate(self, expression: str, wait: bool = False) -> Any:
        """Value of a JavaScript expression (``wait``: await a returned promise)."""
        res = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                     "awaitPromise": wait}, self.session)
        if "exceptionDetails" in res:
            raise RuntimeError(f"javascript error: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def log(self) -> PageLog:
        """Console errors, uncaught exceptions, CSP violations and network requests seen so far."""
        out = PageLog()
        for ev in (e for e in self.browser._events if e.get("sessionId") == self.session):
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.console_errors.append(params["entry"].get("text", ""))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.console_errors.append(" ".join(str(a.get("value", "")) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                out.console_errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Network.requestWillBeSent":
                out.requests.append(params["request"]["url"])
        return out

    def screenshot(self, selector: str | None = None) -> bytes:
        """PNG of the viewport, or of the first element matching ``selector`` (scrolled into view)."""
        params: dict[str, Any] = {"format": "png"}
        if selector is not None:
            rect = self.evaluate(
                f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
                " const r = e.getBoundingClientRect();"
                " return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height}; })()"
            )
            if rect is None:
                raise MedclError(f"{self.url}: no element matches {selector!r}")
            params.update(clip={**rect, "scale": 1}, captureBeyondViewport=True)
        data = self.browser.send("Page.captureScreenshot", params, self.session)["data"]
        return base64.b64decode(data)

    def pdf(self, landscape: bool = True) -> bytes:
        """The page printed to PDF with its print stylesheet (backgrounds on, CSS page size)."""
        data = self.browser.send("Page.printToPDF", {"landscape": landscape, "printBackground": True,
                                                     "preferCSSPageSize": True}, self.session)["data"]
        return base64.b64decode(data)


def print_pdf(html: str | Path, pdf: str | Path, browser: Chromium | None = None) -> Path:
    """Print a local HTML file to ``pdf`` (landscape) with headless Chromium; written atomically."""
    from medcl.utils import atomic_write_path

    if browser is None:
        with Chromium() as chrome:
            return print_pdf(html, pdf, chrome)
    data = browser.open(html).pdf()
    with atomic_write_path(pdf) as tmp:
        tmp.write_bytes(data)
    return Path(pdf)
