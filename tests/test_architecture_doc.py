"""docs/architecture.md ("where things live") names every module of the core: a file added
or renamed without the list being updated fails here."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_core_module_is_in_the_architecture_list():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    core = ROOT / "rbpsolve"
    missing = []
    for path in sorted(core.rglob("*.py")):
        if path.name == "__init__.py" and path.parent != core:
            continue  # a subpackage is listed by its folder
        relative = path.relative_to(core)
        shown = path.name if path.parent == core else f"{relative.parent}/"
        if f"`{shown}`" not in text and path.name not in text:
            missing.append(str(relative))
    assert missing == [], f"docs/architecture.md does not mention {missing}"


def test_the_architecture_list_names_no_missing_file():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    import re

    for name in re.findall(r"`(_?[a-z_]+\.py)`", text):
        assert list((ROOT / "rbpsolve").rglob(name)) or list((ROOT / "adapters").rglob(name)), name
