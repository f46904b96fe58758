"""Render a report's HTML in headless Chromium, to look at it as a reader would: a PNG, or the DOM.

    python -m benchmark.report.screenshot results/default-suite/report.html /tmp/report.png --height 6000

Needs Debian's ``chromium`` (``apt-get install -y chromium``). Networking is switched off as far
as Chromium allows, so the picture shows what a reader sees offline: the report must be
self-contained.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmark.report.screenshot", description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path)
    p.add_argument("png", type=Path)
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=4000)
    args = p.parse_args(argv)
    try:
        print(screenshot(args.html, args.png, args.width, args.height))
    except RuntimeError as e:
        print(f"screenshot: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
