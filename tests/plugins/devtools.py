"""Headless Chromium driven over the DevTools protocol, for tests that click through a page: what it shows, what it
requested (with the status of each answer) and every console error, exception and dialog it raised.

The binary and its flags come from ``tests.browser`` (Debian's package, nothing downloaded at run time).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.pg_server import free_port


def wait(check: Callable[[], Any], what: str, timeout: float) -> Any:
    """The first truthy result of ``check`` (polled every 0.2 s; connection errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (httpx.HTTPError, OSError):
            found = None
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class DevTools:
    """One page of a headless Chromium; records console errors, exceptions, dialogs and the responses it received."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.socket = connect(url, max_size=None)
        self.next_id = 0
        self.errors: list[str] = []
        self.responses: list[tuple[str, int]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        wanted = self.next_id
        self.socket.send(json.dumps({"id": wanted, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == wanted:
                assert "error" not in message, f"{method}: {message['error']}"
                return message["result"]
            self._event(message)

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            self.errors.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.responseReceived":
            self.responses.append((params["response"]["url"], params["response"]["status"]))
        elif method == "Page.javascriptDialogOpening":  # a page that needs a dialog is a failure here
            self.errors.append(f"dialog: {params['type']} {params['message']!r}")
            self.next_id += 1
            self.socket.send(json.dumps({"id": self.next_id, "method": "Page.handleJavaScriptDialog",
                                         "params": {"accept": False}}))  # fmt: skip

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        found = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in found, f"{expression}: {found['exceptionDetails']}"
        return found["result"].get("value")

    def text(self, document: str = "document") -> str:
        """The visible text of ``document`` (an expression: a frame's is ``frame.contentDocument``); empty while a
        navigation replaces it."""
        return self.evaluate(f"(() => {{ const d = {document}; return d && d.body ? d.body.innerText : ''; }})()") or ""

    def responded(self, fragment: str) -> list[tuple[str, int]]:
        """The (url, status) of each response so far whose URL holds ``fragment`` (reads the events that arrived)."""
        self.evaluate("0")
        return [(url, status) for url, status in self.responses if fragment in url]

    def open(self, url: str) -> None:
        """Navigate to ``url`` (the errors and responses recorded so far are dropped)."""
        self.errors.clear()
        self.responses.clear()
        self.call("Page.navigate", url=url)

    def click(self, selector: str, document: str = "document") -> None:
        """A real mouse click (press and release) at the middle of the element ``selector`` of ``document``; an element
        of a frame is found inside that frame and clicked where the frame shows it."""
        box = self.evaluate(f"""(() => {{
            const d = {document}, e = d.querySelector({json.dumps(selector)});
            if (!e) return null;
            e.scrollIntoView({{block: "center"}});
            const r = e.getBoundingClientRect(), f = d.defaultView.frameElement;
            const o = f ? f.getBoundingClientRect() : {{left: 0, top: 0}};
            return {{x: o.left + r.left + r.width / 2, y: o.top + r.top + r.height / 2, disabled: !!e.disabled}};
        }})()""")
        assert box is not None, f"no element {selector} in {document}"
        assert not box["disabled"], f"{selector} is disabled"
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box["x"], y=box["y"], button="left", clickCount=1)


@contextmanager
def chromium_page(width: int = 1400, height: int = 1000) -> Iterator[DevTools]:
    """A headless Chromium with one page, its Runtime, Log, Page and Network events on; closed afterwards."""
    from tests.browser import FLAGS, chromium, chromium_profile, stop_chromium

    debug_port = free_port()
    with chromium_profile() as profile:
        browser = subprocess.Popen(
            [chromium(), *FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={debug_port}",
             "--remote-allow-origins=*", f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            pages = wait(
                lambda: [
                    t
                    for t in httpx.get(f"http://127.0.0.1:{debug_port}/json/list", timeout=2).json()
                    if t["type"] == "page"
                ],
                "Chromium's DevTools",
                20,
            )
            tools = DevTools(pages[0]["webSocketDebuggerUrl"])
            for domain in ("Runtime", "Log", "Page", "Network"):
                tools.call(f"{domain}.enable")
            tools.call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
            try:
                yield tools
            finally:
                tools.socket.close()
        finally:
            stop_chromium(browser)
