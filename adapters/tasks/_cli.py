"""What the command lines of the reference tasks share (``rbpsolve task NAME``, ``rbpsolve reproduce NAME``).

One family of options with one meaning each:

``--data DIR``      the data directory (default ``$RBPSOLVE_DATA``, else the user cache)
``--download``      fetch missing data files from the published mirrors
``--out DIR``       output directory: ``task`` writes only when given one, ``reproduce``
                    has a default (``docs/results/NAME``) and prints it at the start
``--device DEV``    torch device (``cpu``, ``cuda``, ``cuda:1``, ...)
``--seed N``        the run's seed
``--method NAME``   one method of :mod:`rbpsolve.adapters.tasks.methods` (aliases accepted,
                    canonical in outputs); ``reproduce`` takes ``--methods A,B,...``

Errors are one line (``rbpsolve task NAME: error: ...``, exit code 2); progress bars go
to stderr and only when it is a terminal. Nothing here imports torch, so ``--help`` works
without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .methods import ALIASES, canonical

__all__ = ["HelpFormatter", "add_backend", "array_namespace", "add_common", "check_device", "data_message", "fail", "flat", "make_parser", "method_list", "method_type",
           "number", "progress_bar", "record_path", "start_out"]

ENV_VAR = "RBPSOLVE_DATA"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default in its help line (a flag's ``False`` and an unset ``None``, whose help
    says what happens then, left out); descriptions kept as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser of the family: defaults in the help, one-line errors naming ``prog``."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)


def fail(prog: str, message: str, code: int = 2):
    """Exit with ``prog: error: message`` on one line of stderr (newlines in ``message`` folded), code 2."""
    text = " ".join(str(message).split())
    sys.stderr.write(f"{prog}: error: {text}\n")
    raise SystemExit(code)


def flat(lists) -> list:
    """``--methods a,b c`` parsed as ``[[a, b], [c]]``: one list, without repeats."""
    out = []
    for item in lists:
        for name in (item if isinstance(item, list) else [item]):
            if name not in out:
                out.append(name)
    return out


def number(kind, low, name: str = ""):
    """An argparse type: ``kind`` (int or float) ``>= low``; a bad value is argparse's one-line error."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value >= low or (kind is float and value != value):
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'} >= {low}; "
                                             f"got {text!r}")
        return value

    parse.__name__ = name or f"{kind.__name__} >= {low}"
    return parse


def method_type(allowed):
    """An argparse type: any spelling of a method in ``allowed``, returned canonical."""

    def parse(text):
        try:
            return canonical(text, allowed)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = "method"
    return parse


def method_list(allowed):
    """An argparse type: comma-separated methods (any spelling), returned as a list of canonical names."""
    one = method_type(allowed)

    def parse(text):
        names = [one(part) for part in text.split(",") if part.strip()]
        if not names:
            raise argparse.ArgumentTypeError("give at least one method")
        return names

    parse.__name__ = "method list"
    return parse


def _aliases(allowed) -> str:
    pairs = [f"{a}={c}" for a, c in ALIASES.items() if c in allowed and "-" not in a and a.isalpha()]
    return f"; also accepted: {', '.join(pairs)}" if pairs else ""


def add_common(p: argparse.ArgumentParser, *, methods, method_default, seed_default: int, seed_help: str,
               out_default: str | None, out_help: str, multi: bool = False, download: bool = True) -> None:
    """The family's options: ``--data``, ``--download``, ``--out``, ``--device``, ``--seed`` and
    ``--method`` (``multi``: ``--methods``, comma- or space-separated)."""
    g = p.add_argument_group("common options of the rbpsolve tasks")
    if multi:
        g.add_argument("--methods", type=method_list(methods), nargs="+", default=",".join(method_default),
                       metavar="METHOD[,METHOD...]",
                       help=f"methods to run, comma- or space-separated, from {', '.join(methods)}{_aliases(methods)}")
    else:
        g.add_argument("--method", type=method_type(methods), default=method_default, metavar="METHOD",
                       help=f"gradient method: one of {', '.join(methods)}{_aliases(methods)}")
    g.add_argument("--data", default=None, metavar="DIR",
                   help=f"data directory (None: ${ENV_VAR}, else the user cache)")
    g.add_argument("--data-root", dest="data", default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # deprecated spelling
    g.add_argument("--download", action="store_true",
                   help="fetch missing data files from the published mirrors" if download else
                   "not available for this data: the files must be copied into --data (see the error message)")
    g.add_argument("--out", type=Path, default=None if out_default is None else Path(out_default), metavar="DIR",
                   help=out_help)
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1")
    g.add_argument("--seed", type=number(int, 0), default=seed_default, help=seed_help)
    g.add_argument("--no-progress", action="store_true",
                   help="no progress bar (there is none anyway when stderr is not a terminal)")


def check_device(prog: str, device: str) -> None:
    """One-line error unless torch can allocate on ``device``."""
    import torch

    try:
        torch.empty(0, device=torch.device(device))
    except (RuntimeError, AssertionError, ValueError) as error:
        fail(prog, f"--device {device!r} is not usable here ({error}); use --device cpu")


def data_message(error, root) -> str:
    """A :class:`DataFileError`'s message naming ``--data`` / ``$RBPSOLVE_DATA`` and the fix, on one line."""
    from .data._files import command_line_message

    message = command_line_message(error, root).replace("load_mnist(..., download=True)", "--download")
    if "--data" not in message:
        message += f" Give the data directory with --data DIR or ${ENV_VAR}."
    return message


def start_out(prog: str, out: Path | None, default: str | None = None) -> Path | None:
    """Print where the outputs go, at the start (stderr), and return the directory (None: nothing written)."""
    if out is None:
        print(f"{prog}: no output files (give --out DIR to write them)", file=sys.stderr, flush=True)
        return None
    note = " (the default --out)" if default is not None and Path(out) == Path(default) else ""
    print(f"{prog}: writing to {out}/{note}", file=sys.stderr, flush=True)
    return Path(out)


def record_path(out: Path, name: str) -> Path:
    """``out/name``; an ``--out`` ending in ``.json`` (the older meaning: a file) is used as the file itself."""
    out = Path(out)
    if out.suffix == ".json":
        out.parent.mkdir(parents=True, exist_ok=True)
        return out
    out.mkdir(parents=True, exist_ok=True)
    return out / name


class _NoBar:
    def update(self, n=1):
        pass

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def progress_bar(*, total=None, desc="", enabled=True, **kwargs):
    """A tqdm bar on stderr when ``enabled`` and stderr is a terminal; else one that draws nothing.

    Redirected output then holds only the results, each on its own line.
    """
    if not enabled or not _isatty(sys.stderr):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, **kwargs)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


BACKENDS = ("torch", "numpy", "cupy")


def add_backend(p: argparse.ArgumentParser, what: str) -> None:
    """``--backend torch|numpy|cupy`` (torch the default): the autograd model or the array-API one."""
    p.add_argument("--backend", choices=BACKENDS, default="torch",
                   help=f"torch: the autograd model; numpy or cupy: the array-API model with hand-written products "
                        f"(float32; numpy on the CPU, cupy on its current GPU; {what})")


def array_namespace(prog: str, backend: str):
    """``array_api_compat``'s numpy or cupy namespace for ``--backend``; a one-line error where cupy cannot run."""
    if backend == "numpy":
        import array_api_compat.numpy as xp

        return xp
    try:
        import array_api_compat.cupy as xp
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # not installed, or no GPU / driver
        fail(prog, f"--backend cupy cannot run here ({type(error).__name__}: {error}); install cupy-cuda12x or "
                   "cupy-cuda13x (the [cupy] extra) on a machine with an NVIDIA GPU, or use --backend numpy")
    return xp
