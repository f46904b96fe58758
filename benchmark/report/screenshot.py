"""Look at pages as a reader would, in headless Chromium: a report's HTML, or MLflow's UI on a store.

    python -m benchmark.report.screenshot results/default-suite/report.html /tmp/report.png --height 6000
    python -m benchmark.report.screenshot --mlflow sqlite:///mlflow.db --experiment default-suite /tmp/runs.png

Needs Debian's ``chromium`` (``apt-get install -y chromium``). For a report, networking is
switched off as far as Chromium allows, so the picture shows what a reader sees offline: the
report must be self-contained. For MLflow, ``mlflow_ui`` serves the store on a free local port and
``Browser`` drives Chromium over its DevTools pipe: it waits until the page shows what it should
(the runs table, not a spinner) and can click like a person would.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _chromium(page: Path, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no headless browser found (looked for {', '.join(BROWSERS)}); apt-get install -y chromium")
    with tempfile.TemporaryDirectory(prefix="rnnbench-chromium-") as profile:
        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", *args, page.resolve().as_uri(),
        ]  # fmt: skip
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def screenshot(html: Path, png: Path, width: int = 1280, height: int = 4000, timeout: float = 120) -> Path:
    """Write ``png``, a ``width`` x ``height`` capture of ``html``; RuntimeError if Chromium fails."""
    png = png.resolve()
    done = _chromium(html, [f"--screenshot={png}", f"--window-size={width},{height}"], timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return png


def dump_dom(html: Path, timeout: float = 120, script_ms: int = 5000) -> str:
    """The page's DOM as Chromium has it after loading ``html`` and running its scripts for ``script_ms``."""
    done = _chromium(html, ["--dump-dom", f"--virtual-time-budget={script_ms}"], timeout)
    if done.returncode != 0 or "<html" not in done.stdout:
        raise RuntimeError(f"chromium dumped no DOM (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


class Browser:
    """Headless Chromium driven over its DevTools pipe: open a page, wait for it, run scripts, capture it.

    ``with Browser(1500, 1000) as b: b.open(url); b.wait_for("document.title != ''"); b.png(path)``.
    Messages are the DevTools protocol's JSON, NUL-separated, on fds 3 (to Chromium) and 4 (from it).
    """

    def __init__(self, width: int = 1500, height: int = 1000, timeout: float = 120):
        self.width, self.height, self.timeout = width, height, timeout
        self._next_id, self._buffer, self.session = 0, b"", None

    def __enter__(self) -> Browser:
        browser = find_browser()
        if browser is None:
            raise RuntimeError(f"no headless browser found (looked for {', '.join(BROWSERS)}); apt-get install -y chromium")
        self._profile = tempfile.TemporaryDirectory(prefix="rnnbench-chromium-")
        to_chromium, self._commands = os.pipe()
        self._replies, from_chromium = os.pipe()

        def pipes_as_fds_3_and_4():  # in the child, before exec; F_DUPFD keeps the copies clear of 3 and 4
            read_end, write_end = fcntl.fcntl(to_chromium, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chromium, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            "--disable-component-update", "--disable-sync", "--remote-debugging-pipe",
            f"--user-data-dir={self._profile.name}", f"--window-size={self.width},{self.height}",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(3, 4), preexec_fn=pipes_as_fds_3_and_4,
        )  # fmt: skip
        os.close(to_chromium)
        os.close(from_chromium)
        try:
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height, deviceScaleFactor=1, mobile=False)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(Exception):
            self.session = None
            self.call("Browser.close", wait=5)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._commands)
        os.close(self._replies)
        self._profile.cleanup()

    def call(self, method: str, wait: float | None = None, **params) -> dict:
        """Send one DevTools command (to the page's session once attached) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (wait or self.timeout)
        while True:
            while b"\0" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self._replies], [], [], left)[0]:
                    raise RuntimeError(f"chromium did not answer {method} within {wait or self.timeout:.0f} s")
                chunk = os.read(self._replies, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed its DevTools pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:  # events and other replies are not waited for
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails'].get('text')} in {expression[:200]}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float | None = None) -> None:
        """Poll until ``expression`` is truthy in the page (a throw counts as not yet); RuntimeError after ``timeout``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.evaluate(f"(() => {{ try {{ return Boolean({expression}); }} catch (e) {{ return false; }} }})()"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the page never showed {expression!r} within {timeout or self.timeout:.0f} s")
            time.sleep(0.25)

    def _middle(self, element: str, timeout: float | None = None) -> tuple[float, float]:
        self.wait_for(element, timeout)
        return self.evaluate(f"(() => {{ const r = ({element}).getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()")

    def click(self, element: str, timeout: float | None = None) -> None:
        """Click the middle of the element a JavaScript expression returns (once it exists), with the mouse."""
        x, y = self._middle(element, timeout)
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def dom(self) -> str:
        return self.evaluate("document.documentElement.outerHTML")

    def png(self, path: Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(tracking_uri: str, timeout: float = 180) -> Iterator[str]:
    """Serve ``tracking_uri`` with ``mlflow ui`` on a free port of 127.0.0.1; yields its base URL, stops it after."""
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = tempfile.TemporaryFile()
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # its own group: stop all of it
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
                    if reply.status == 200:
                        break
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip()[-500:]
                raise RuntimeError(f"mlflow ui did not come up on {url} (exit {server.poll()}): {tail}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def runs_page(base_url: str, experiment_id: str) -> str:
    """An experiment's runs table in MLflow 3's "Model training" view (it opens in its GenAI view otherwise)."""
    return f"{base_url}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


# The assistant panel opens by itself on a local server's first visit: close it as a person would.
ASSISTANT_CLOSE = "document.querySelector('button[data-component-id=\"mlflow.assistant.chat_panel.close\"]')"
# Runs nested under a parent (a suite's, a study's) are folded away: the button beside its name unfolds them.
EXPANDERS = "[...document.querySelectorAll('.ag-cell[col-id*=\"Run Name\"] button')]"


def _shows(texts) -> str:
    return " && ".join(f"document.body.innerText.includes({json.dumps(t)})" for t in texts)


def mlflow_runs(tracking_uri: str, experiment: str, png: Path | None = None, width: int = 1500, height: int = 1000,
                expect: tuple[str, ...] = ()) -> str:  # fmt: skip
    """Open ``experiment``'s runs table in MLflow's UI on a store, nested runs expanded; returns the rendered DOM.

    Waits until every text in ``expect`` (default: the names of the experiment's latest 12 runs)
    shows in the page, then writes ``png`` if given.
    """
    from benchmark.record import Tag
    from benchmark.tracking import client

    mlflow = client(tracking_uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise RuntimeError(f"experiment '{experiment}' not found at {tracking_uri}")
    runs = mlflow.search_runs([exp.experiment_id], max_results=12)
    if not runs:
        raise RuntimeError(f"experiment '{experiment}' at {tracking_uri} holds no runs")
    expect = expect or tuple(r.info.run_name for r in runs)
    nested = any(Tag.PARENT_RUN in r.data.tags for r in runs)
    with mlflow_ui(tracking_uri) as url, Browser(width, height) as browser:
        browser.open(runs_page(url, exp.experiment_id))
        browser.wait_for("document.body.innerText.includes('matching run')")
        with contextlib.suppress(RuntimeError):  # an MLflow without the assistant
            browser.click(ASSISTANT_CLOSE, timeout=20)
        if nested:
            browser.wait_for(f"{EXPANDERS}.length")
            for i in range(browser.evaluate(f"{EXPANDERS}.length")):
                browser.click(f"{EXPANDERS}[{i}]")
        browser.wait_for(_shows(expect))
        time.sleep(1.0)  # let the layout settle
        if png is not None:
            browser.png(png)
        return browser.dom()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.report.screenshot", description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path, nargs="?", help="a report's HTML (or give --mlflow)")
    p.add_argument("png", type=Path)
    p.add_argument("--mlflow", metavar="TRACKING_URI", help="screenshot MLflow's runs table of --experiment on this store instead")
    p.add_argument("--experiment", help="with --mlflow: the experiment")
    p.add_argument("--width", type=int, default=None, help="default: 1280 (report), 1500 (MLflow)")
    p.add_argument("--height", type=int, default=None, help="default: 4000 (report), 1000 (MLflow)")
    args = p.parse_args(argv)
    try:
        if args.mlflow:
            if not args.experiment:
                p.error("--mlflow needs --experiment")
            mlflow_runs(args.mlflow, args.experiment, args.png, args.width or 1500, args.height or 1000)
            print(args.png)
        elif args.html is None:
            p.error("give a report's HTML file, or --mlflow TRACKING_URI --experiment NAME")
        else:
            print(screenshot(args.html, args.png, args.width or 1280, args.height or 4000))
    except RuntimeError as e:
        print(f"screenshot: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
