"""Griffe extension: render the Sphinx markup of rbpsolve's numpydoc docstrings.

The docstrings follow numpydoc (scipy's house style), whose cross-references are Sphinx roles
(``:func:`fixed_point```, ``:class:`~rbpsolve.Result```) and whose displayed equations are
``.. math::`` directives. mkdocstrings renders Markdown, where both would show as raw text.
Before the docstrings are parsed, this extension rewrites

- a role into a link to the object's API entry where it has one, plain code otherwise
  (an optional autorefs reference: ``~`` shows the last name only, a leading ``.`` is relative
  to the current package, names are resolved in the docstring's scope as Python would);
- a ``.. math::`` block into a ``$$ ... $$`` block for pymdownx.arithmatex;
- the ``::`` that ends a paragraph before a literal block into ``:``.

The source keeps its numpydoc form, so ``help()`` and IDEs read it as before.
"""

from __future__ import annotations

import html
import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`([^`]+)`")
# ".. math::" then an indented block, or ".. math:: first line" and its indented continuation.
MATH = re.compile(
    r"^(?P<indent>[ \t]*)\.\. math::(?P<first>[^\n]*)\n(?P<body>(?:(?:(?P=indent)[ \t]+[^\n]*)?\n)*)", re.M
)
# setuptools installs adapters/ as rbpsolve.adapters; griffe records their imports as adapters.*.
PREFIXES = (("adapters.", "rbpsolve.adapters."),)


def _identifier(obj: griffe.Object, target: str) -> str:
    if target.startswith("."):
        dots = len(target) - len(target.lstrip("."))
        base = obj.module if obj.module.is_package else obj.module.parent
        for _ in range(dots - 1):
            base = base.parent or base
        return f"{base.path}.{target.lstrip('.')}"
    first, _, rest = target.partition(".")
    scope = obj if obj.is_module or obj.is_class else obj.parent
    try:
        path = scope.resolve(first)
    except (griffe.NameResolutionError, AttributeError):
        return target
    full = f"{path}.{rest}" if rest else path
    for old, new in PREFIXES:
        if full.startswith(old):
            full = new + full[len(old):]
    return full


def _role(obj: griffe.Object, match: re.Match) -> str:
    text = match.group(1).strip()
    if "<" in text and text.endswith(">"):  # :func:`title <target>`
        title, _, text = text[:-1].partition("<")
        shown = title.strip()
    else:
        shown = None
    if text.startswith("!"):
        return f"<code>{html.escape(text[1:])}</code>"
    short = text.startswith("~")
    target = text.lstrip("~")
    if shown is None:
        shown = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
    identifier = html.escape(_identifier(obj, target), quote=True)
    return f'<autoref identifier="{identifier}" optional><code>{html.escape(shown)}</code></autoref>'


def _math(match: re.Match) -> str:
    indent = match.group("indent")
    lines = [match.group("first").strip()] + [line.strip() for line in match.group("body").splitlines()]
    body = "\n".join(f"{indent}{line}" for line in lines if line)
    return f"{indent}$$\n{body}\n{indent}$$\n\n"


def rewrite(obj: griffe.Object, text: str) -> str:
    text = MATH.sub(_math, text)
    # reST's "paragraph::" before a literal block: Markdown shows the indented block as code anyway.
    text = re.sub(r"(\S)::\n\n", r"\1:\n\n", text)
    return ROLE.sub(lambda m: _role(obj, m), text)


class SphinxMarkup(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        if pkg.name == "rbpsolve":
            self._walk(pkg, set())

    def _walk(self, obj: griffe.Object, seen: set) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj, obj.docstring.value)
        for member in list(obj.members.values()):
            if not member.is_alias:
                self._walk(member, seen)
