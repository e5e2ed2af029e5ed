"""Griffe extension: find ``rbpsolve.adapters`` where setuptools installs it from.

pyproject.toml maps the package ``rbpsolve.adapters`` to the folder ``adapters/`` (beside
``rbpsolve/``, not inside it). Python's import system follows that mapping; griffe, which reads
the source without importing it, looks for ``rbpsolve/adapters/`` and finds nothing. When griffe
has loaded the ``rbpsolve`` package, this extension loads ``adapters/`` from the repository
root and attaches it as ``rbpsolve.adapters``, so that ``::: rbpsolve.adapters.torch.fixed_point``
resolves to the source. (The adapters' own imports stay recorded under the name ``adapters``,
which griffe also keeps, so aliases between their modules still resolve.)
"""

from __future__ import annotations

import griffe


class AdaptersUnderRbpsolve(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        if pkg.name != "rbpsolve" or "adapters" in pkg.members:
            return
        adapters = loader.load("adapters", try_relative_path=False)
        pkg.set_member("adapters", adapters)
