"""`rbpsolve --version`, and compare's progress bar: drawn on a terminal's stderr, silent elsewhere."""

from __future__ import annotations

import builtins
import importlib.metadata
import io
import subprocess
import sys

import pytest

import rbpsolve
from rbpsolve import _progress, cli


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"rbpsolve {rbpsolve.__version__}"
    # One version: the module's and the installed metadata's (pyproject.toml) agree.
    assert rbpsolve.__version__ == importlib.metadata.version("rbpsolve")


def test_version_from_the_console_script_entry():
    proc = subprocess.run([sys.executable, "-m", "rbpsolve.cli", "--version"],
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == f"rbpsolve {rbpsolve.__version__}"


class _Terminal(io.StringIO):
    """A captured stream that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture
def no_tqdm(monkeypatch):
    """Import of tqdm fails, as in a venv with only the [test] extra: the plain bar must draw."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError("No module named 'tqdm'", name="tqdm")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def _compare(monkeypatch, stderr, *flags):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.setattr(sys, "stdout", out)
    assert cli.main(["compare", "--n", "32", *flags]) == 0
    return out.getvalue()


def test_compare_draws_a_bar_on_a_terminal_without_tqdm(monkeypatch, no_tqdm):
    err = _Terminal()
    out = _compare(monkeypatch, err)
    drawn = err.getvalue()
    # Every stage is named while it runs, the bar ends full, and stdout holds only the results.
    for stage in ("steady state 1 (dense Newton)", "reference adjoint (dense LU)", "cond(I - J) (dense SVD)",
                  "GMRES(50)"):
        assert stage in drawn
    assert "9/9" in drawn and drawn.endswith("\n")
    assert "\r" not in out and "GMRES(50)" in out


def test_compare_is_silent_when_stderr_is_not_a_terminal(monkeypatch):
    err = io.StringIO()
    out = _compare(monkeypatch, err)
    assert err.getvalue() == ""
    assert "GMRES(50)" in out


def test_progress_flags_override_the_terminal_test(monkeypatch, no_tqdm):
    err = io.StringIO()
    _compare(monkeypatch, err, "--progress")
    assert "9/9" in err.getvalue()
    err = _Terminal()
    _compare(monkeypatch, err, "--no-progress")
    assert err.getvalue() == ""


def test_progress_uses_tqdm_when_installed():
    tqdm = pytest.importorskip("tqdm")
    bar = _progress.progress(total=2, desc="x", stream=_Terminal())
    assert isinstance(bar, tqdm.tqdm)
    bar.close()


def test_plain_bar_without_a_total_counts(no_tqdm):
    err = _Terminal()
    with _progress.progress(desc="work", stream=err) as bar:
        bar.update()
        bar.update(2)
    assert "work: 3 " in err.getvalue()
