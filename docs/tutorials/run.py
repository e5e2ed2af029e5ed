"""Run a tutorial page's code: its ```python blocks, top to bottom, in one namespace.

    python docs/tutorials/run.py docs/tutorials/batched.md            # cwd = the page's folder
    python docs/tutorials/run.py docs/tutorials/batched.md --cwd DIR  # figures go to DIR/figures/

The page writes its figures to ``figures/<name>.png`` relative to the working directory, so the
first form regenerates the committed figures next to the page. A block preceded (after blank
lines) by the admonition ``!!! note "Not run by the tests"`` is skipped, here and in the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

SKIP = '!!! note "Not run by the tests"'
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_FIGURE = re.compile(r"!\[[^\]]*\]\((figures/[^)\s]+\.png)\)")


def blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number, code)`` of each block to run, in page order."""
    out = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()]
        # The admonition's body is indented, so look at the last unindented paragraph
        # before the block.
        previous = [line for line in before.splitlines() if line.strip() and not line.startswith((" ", "\t"))]
        if previous and previous[-1].strip() == SKIP:
            continue
        out.append((before.count("\n") + 2, match.group(1)))
    return out


def figures(text: str) -> list[str]:
    """The figure paths the page shows, relative to the page (``figures/<name>.png``)."""
    return sorted(set(_FIGURE.findall(text)))


def run(page: str | os.PathLike, cwd: str | os.PathLike | None = None) -> dict:
    """Execute the page's blocks in one namespace with the working directory ``cwd``
    (default: the page's folder); return the namespace."""
    page = Path(page).resolve()
    cwd = page.parent if cwd is None else Path(cwd)
    (cwd / "figures").mkdir(parents=True, exist_ok=True)
    namespace = {"__name__": "__tutorial__", "__file__": str(page)}
    text = page.read_text()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        for line, code in blocks(text):
            # Pad with newlines so that tracebacks give the line numbers of the page.
            exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)  # noqa: S102 - our own pages
    finally:
        os.chdir(here)
    return namespace


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", help="a tutorial page, e.g. docs/tutorials/batched.md")
    parser.add_argument("--cwd", help="working directory (default: the page's folder); figures go to CWD/figures/")
    args = parser.parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    run(args.page, args.cwd)
    text = Path(args.page).read_text()
    cwd = Path(args.page).resolve().parent if args.cwd is None else Path(args.cwd)
    missing = [f for f in figures(text) if not (cwd / f).is_file()]
    if missing:
        print(f"{args.page}: the page shows figures its code did not write: {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
