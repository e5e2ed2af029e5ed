"""Screenshots of the built site in a real browser (Debian's headless chromium).

Serves ``site/`` (``mkdocs build`` first; the asv dashboard in ``site/asv/`` after
``asv publish``) on a free localhost port and takes a PNG of each page with
``chromium --headless --screenshot``, so that the pages can be looked at as a reader sees
them: rendered math, tables, code, navigation, the dashboard's plots.

Usage::

    python docs/screenshots.py --out docs/screenshots            # the default pages
    python docs/screenshots.py --out /tmp/shots tutorials/batched/ api/rbpsolve/

Writes ``OUT/<page>.png`` (``/`` in the page's path becomes ``_``) and prints each file.
"""

from __future__ import annotations

import argparse
import re
import functools
import http.server
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["", "tutorials/choosing-a-solver/", "api/rbpsolve/", "benchmarks/", "asv/index.html", "scale/"]


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("no chromium found: apt-get install chromium")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # one line a request would bury the list of screenshots
        pass


def _serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(_QuietHandler, directory=str(directory))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, port


def shoot(pages, out: Path, site: Path, width: int, height: int, wait_ms: int) -> list[Path]:
    """One PNG a page; the browser waits ``wait_ms`` for scripts (MathJax, the dashboard)."""
    if not (site / "index.html").exists():
        raise SystemExit(f"{site} has no index.html: run `mkdocs build` first")
    out.mkdir(parents=True, exist_ok=True)
    server, port = _serve(site)
    browser, written = _browser(), []
    try:
        for page in pages:
            name = (re.sub(r"[/#]+", "_", page.strip("/")).replace(".html", "") or "home") + ".png"
            target = out / name
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 f"--window-size={width},{height}", f"--virtual-time-budget={wait_ms}",
                 f"--screenshot={target}", f"http://127.0.0.1:{port}/{page}"],
                check=True, capture_output=True, timeout=120,
            )
            written.append(target)
            print(target)
    finally:
        server.shutdown()
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="*", default=PAGES, help="paths under the site (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--site", type=Path, default=ROOT / "site")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1600)
    parser.add_argument("--wait-ms", type=int, default=5000)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    shoot(args.pages, args.out, args.site, args.width, args.height, args.wait_ms)
    print(f"{len(args.pages)} screenshot(s) in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
