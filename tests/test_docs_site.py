"""The documentation site (mkdocs.yml, docs/): every public name has an API entry, every
entry names something that exists, and every code block of the pages runs.

Needs neither mkdocs nor the frameworks: ``__all__`` and the API directives are read from the
source, and a code block that imports torch, jax, dask or cupy is skipped where that library
is absent. ``mkdocs build --strict`` (in .ci/run) checks links and docstring rendering.

A block is left out of the run only when the page says so, right before it, in a visible
admonition whose body gives the reason (a GPU, several processes, an hour-long run)::

    !!! note "Not run by the tests"
        Needs 2 processes; tests/test_docs_scale.py runs it on 2 gloo ranks.

    ```python
    ...
    ```
"""

from __future__ import annotations

import ast
import importlib.util
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API = DOCS / "api"
# Pages whose blocks other tests run, or that are not prose: the tutorials (tests/test_tutorials.py)
# and the generated results pages.
NOT_HERE = ("results", "tutorials")
MARKER = '!!! note "Not run by the tests"'
# A block that imports one of these (or its rbpsolve adapter) is skipped where it is absent.
OPTIONAL = {"torch": "torch", "jax": "jax", "dask": "dask", "cupy": "cupy", "array_api_strict": "array_api_strict"}

# Each package whose __all__ the API reference covers, name by name, and its page.
PACKAGES = {
    "rbpsolve": "rbpsolve.md",
    "rbpsolve.adapters.torch": "torch.md",
    "rbpsolve.adapters.torch.distributed": "torch.md",
    "rbpsolve.adapters.jax": "jax.md",
    "rbpsolve.adapters.tasks.data": "tasks.md",
}


# ----------------------------------------------------------------------------- the source
def _source(module: str) -> Path | None:
    """The file of a module of rbpsolve (``rbpsolve.adapters`` is the folder adapters/)."""
    parts = module.split(".")
    if parts[0] != "rbpsolve":
        return None
    base = ROOT / "adapters" if parts[1:2] == ["adapters"] else ROOT / "rbpsolve"
    rest = parts[2:] if parts[1:2] == ["adapters"] else parts[1:]
    path = base.joinpath(*rest)
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    return None


def _tree(module: str) -> ast.Module:
    return ast.parse(_source(module).read_text(encoding="utf-8"))


def _all(module: str) -> list[str]:
    for node in _tree(module).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise AssertionError(f"{module} has no __all__")


def _directives(page: str) -> list[str]:
    return re.findall(r"^::: (\S+)", (API / page).read_text(encoding="utf-8"), re.M)


# ----------------------------------------------------------------------------- API reference
@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_every_public_name_has_an_api_entry(package):
    documented = set(_directives(PACKAGES[package]))
    missing = [name for name in _all(package) if f"{package}.{name}" not in documented]
    assert missing == [], f"docs/api/{PACKAGES[package]} has no '::: {package}.NAME' for {missing}"


@pytest.mark.parametrize("page", sorted(p.name for p in API.glob("*.md")))
def test_every_api_entry_exists(page):
    """A directive names a module, or a name a module defines or exports (a renamed or removed
    name fails here, not only in the site build)."""
    for target in _directives(page):
        if _source(target) is not None:
            continue
        module, _, name = target.rpartition(".")
        assert _source(module) is not None, f"{page}: '::: {target}': no module {module}"
        tree = _tree(module)
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        defined |= {a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        exported = _all(module) if "__all__" in ast.unparse(tree) else []
        assert name in defined | set(exported), f"{page}: '::: {target}': {module} has no {name}"


def test_every_nav_page_exists():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    pages = re.findall(r":\s*(\S+\.md)\s*$", nav, re.M)
    assert len(pages) > 20
    assert [page for page in pages if not (DOCS / page).is_file()] == []


def test_the_api_pages_are_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in sorted(API.glob("*.md")):
        assert f"api/{page.name}" in nav, page.name


# ----------------------------------------------------------------------------- code blocks
def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if p.relative_to(DOCS).parts[0] not in NOT_HERE)


def _blocks(text: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, reason)`` for each ```python block; ``reason`` is the not-run marker's
    body ('' for a marker without one), None where the block has no marker."""
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```python\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, start = fence.group(1), i
        i += 1
        body = []
        while i < len(lines) and not re.match(rf"^{indent}```\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        assert i < len(lines), f"line {start + 1}: unclosed ```python block"
        i += 1
        found.append((start + 1, textwrap.dedent("\n".join(body)) + "\n", _marker_before(lines, start)))
    return found


def _marker_before(lines: list[str], fence: int) -> str | None:
    """The body of a not-run admonition ending right before line ``fence``, else None."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    reason = []
    while j >= 0 and lines[j].startswith((" ", "\t")) and lines[j].strip():
        reason.insert(0, lines[j].strip())
        j -= 1
    if j >= 0 and lines[j].strip() == MARKER:
        return " ".join(reason)
    return None


def _missing_libraries(code: str) -> list[str]:
    needed = set()
    for match in re.finditer(r"^\s*(?:import|from)\s+([\w.]+)", code, re.M):
        name = match.group(1)
        if name.startswith("rbpsolve.adapters."):
            name = name.split(".")[2]
        top = name.split(".")[0]
        if top in OPTIONAL:
            needed.add(OPTIONAL[top])
    return sorted(lib for lib in needed if importlib.util.find_spec(lib) is None)


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_code_block_runs(page):
    """Each page's ```python blocks run in order, in one namespace for the page."""
    text = page.read_text(encoding="utf-8")
    namespace: dict = {"__name__": f"docs_{page.stem}"}
    skipped = []
    for line, code, reason in _blocks(text):
        name = f"{page.relative_to(ROOT)}:{line}"
        if reason is not None:
            assert reason, f"{name}: the '{MARKER}' admonition before this block gives no reason"
            continue
        missing = _missing_libraries(code)
        if missing:
            skipped.append(f"{name} needs {', '.join(missing)}")
            continue
        exec(compile(code, name, "exec"), namespace)  # noqa: S102 - our own documentation
    if skipped:
        pytest.skip("; ".join(skipped))


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_not_run_marker_comes_before_a_block(page):
    """A marker left behind (its block moved or deleted) would otherwise say nothing."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
            j += 1
        assert j < len(lines) and re.match(r"```(python|bash)\s*$", lines[j]), (
            f"{page.relative_to(ROOT)}:{i + 1}: '{MARKER}' is not followed by a ```python or ```bash block"
        )


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_every_shell_block_says_why_it_is_not_run(page):
    """Shell commands (installs, torchrun, hour-long task runs) are not run here: each says why,
    so that a reader knows which commands the tests stand behind."""
    lines = page.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*```(bash|sh|shell|console)\s*$", line):
            reason = _marker_before(lines, i)
            assert reason, f"{page.relative_to(ROOT)}:{i + 1}: a shell block without a '{MARKER}' reason"


def test_the_marker_check_sees_a_missing_reason():
    text = f'{MARKER}\n\n```python\nx = 1\n```\n\n{MARKER}\n    Needs a GPU.\n\n```python\ny = 2\n```\n'
    assert [reason for _, _, reason in _blocks(text)] == ["", "Needs a GPU."]
    assert [reason for _, _, reason in _blocks("```python\nz = 3\n```\n")] == [None]
