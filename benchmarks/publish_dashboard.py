"""Build the asv dashboard into the documentation site, readable offline.

``asv publish`` writes an HTML dashboard whose pages load jQuery, flot, bootstrap,
stupidtable and blueimp-md5 from CDNs; the site is read (and screenshot) where no CDN can be
reached, and the issue asks for a dashboard built into the site, not linked from outside it.
This script runs ``asv publish`` on the results committed under ``benchmarks/results/`` and
points every CDN script and stylesheet of the generated pages at local copies in
``dashboard_vendor/`` (copied into the output's ``vendor/``).

The copies come from Debian 12's packages (all MIT-licensed; versions in
``dashboard_vendor/README.md``). flot is 4.2.1 where asv names 0.8.3: its packed build holds
the time, selection and categories plugins asv loads separately; the ``orderBars`` plugin has
no Debian package and is left out (it only offsets bars of several series side by side).

Usage::

    python benchmarks/publish_dashboard.py --out site/asv      # after `mkdocs build`
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "dashboard_vendor"

# CDN file name (the last part of the URL) -> local copy; None: dropped (in the packed flot,
# or not available offline).
LOCAL = {
    "jquery-3.3.1.min.js": "jquery.min.js",
    "jquery.flot.min.js": "jquery.flot.pack.js",
    "jquery.flot.time.min.js": None,
    "jquery.flot.selection.min.js": None,
    "jquery.flot.categories.min.js": None,
    "jquery.flot.orderBars.js": None,
    "stupidtable.min.js": "stupidtable.min.js",
    "md5.min.js": "md5.min.js",
    "bootstrap.min.js": "bootstrap.min.js",
    "bootstrap.min.css": "bootstrap.min.css",
}

_TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)"[^>]*>(?:\s*</script>)?', re.S)


def localise(html: str) -> tuple[str, list[str]]:
    """``html`` with every CDN tag pointing at ``vendor/`` (or removed); the URLs it could not
    map, which the caller treats as an error."""
    unknown = []

    def swap(match):
        url = match.group(2)
        name = url.rsplit("/", 1)[-1]
        if name not in LOCAL:
            unknown.append(url)
            return match.group(0)
        local = LOCAL[name]
        if local is None:
            return ""
        tag = match.group(0).replace(url, f"vendor/{local}")
        # The CDN files' subresource-integrity hashes are not those of the local copies.
        return re.sub(r'\s(?:integrity|crossorigin|referrerpolicy)="[^"]*"', "", tag)

    return _TAG.sub(swap, html), unknown


def publish(out: Path) -> None:
    subprocess.run([sys.executable, "-m", "asv", "publish", "--no-pull", "--html-dir", str(out.resolve())],
                   cwd=HERE, check=True, stdout=subprocess.DEVNULL)
    shutil.copytree(VENDOR, out / "vendor", dirs_exist_ok=True)
    for page in out.glob("*.html"):
        html, unknown = localise(page.read_text(encoding="utf-8"))
        if unknown:
            raise SystemExit(f"{page}: no local copy for {', '.join(unknown)}; add it to {VENDOR.name}/")
        page.write_text(html, encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE.parent / "site" / "asv")
    args = parser.parse_args(argv)
    publish(args.out)
    print(f"dashboard in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
