"""mkdocs hook: serve MathJax from the site itself, so that math renders offline.

MathJax 3.2.2 (Apache-2.0) comes from the ``django-static-mathjax`` wheel of the ``[docs]``
extra, which carries MathJax's own files and needs no Django. This hook adds to the site, under
``javascripts/mathjax/``, the one combined component the pages load (``tex-mml-chtml.js``), the
parts it loads on demand (its fonts, TeX extensions, accessibility and menu modules) and MathJax's
LICENSE. Left out: the speech-rule engine (``sre/``, 4 MB, only for the menu's speech options) and
the other combined components.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

TARGET = "javascripts/mathjax"
# Paths under MathJax's es5/ folder that the tex-mml-chtml component may fetch.
PARTS = ("tex-mml-chtml.js", "a11y", "adaptors", "input", "output/chtml.js", "output/chtml", "ui")


def _mathjax_root() -> Path:
    try:
        import mathjax  # the django-static-mathjax wheel's package
    except ImportError as err:
        raise PluginError(
            "MathJax is missing: install the docs extra (pip install -e '.[docs]'), which brings "
            "django-static-mathjax, the wheel that carries MathJax's files"
        ) from err
    root = Path(mathjax.__file__).parent / "static" / "mathjax"
    if not (root / "es5" / "tex-mml-chtml.js").is_file():
        raise PluginError(f"no MathJax es5 build under {root}: reinstall django-static-mathjax==3.2.2.1")
    return root


def on_files(files: Files, config) -> Files:
    root = _mathjax_root()
    es5 = root / "es5"
    sources = [(root / "LICENSE", "LICENSE")]
    for part in PARTS:
        path = es5 / part
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        sources += [(p, p.relative_to(es5).as_posix()) for p in found]
    for path, rel in sources:
        files.append(File.generated(config, f"{TARGET}/{rel}", abs_src_path=str(path)))
    return files
