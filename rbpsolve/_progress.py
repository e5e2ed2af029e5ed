"""Progress bars for the ``rbpsolve`` command, drawn on stderr only when a person is watching.

tqdm draws the bar when it is installed; without it a plain one-line bar stands in, because the
core must not depend on tqdm (it comes only with the ``[plot]`` extra). Where stderr is not a
terminal (a pipe, a log file, a test's capture) nothing is drawn, so redirected output holds only
the results.
"""

from __future__ import annotations

import sys
import time

__all__ = ["progress"]


class _NoBar:
    """A bar that draws nothing (stderr is not a terminal, or bars were switched off)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class _PlainBar(_NoBar):
    """``desc [#####.....] 3/9 1.2s`` redrawn in place with a carriage return; tqdm's stand-in."""

    width = 30

    def __init__(self, total: int | None, desc: str, stream) -> None:
        self.total, self.desc, self.stream = total, desc, stream
        self.count, self.start, self._last = 0, time.perf_counter(), 0
        self._draw()

    def _draw(self) -> None:
        elapsed = time.perf_counter() - self.start
        if self.total:
            filled = min(self.width, self.width * self.count // self.total)
            bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.count}/{self.total}"
        else:
            bar = f"{self.count}"
        line = f"{self.desc}: {bar} {elapsed:.1f}s"
        # Pad over what the previous, possibly longer, line left behind.
        self.stream.write("\r" + line.ljust(self._last))
        self.stream.flush()
        self._last = len(line)

    def update(self, n: int = 1) -> None:
        self.count += n
        self._draw()

    def set_description(self, desc: str) -> None:
        self.desc = desc
        self._draw()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.stream = None


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress(total: int | None = None, desc: str = "", *, enabled: bool | None = None, stream=None):
    """A progress bar on ``stream`` (default ``sys.stderr``), or one that draws nothing.

    Parameters
    ----------
    total : int or None
        Number of ``update()`` calls expected; None shows a plain count.
    desc : str
        Text before the bar; ``set_description`` changes it (the stage now running).
    enabled : bool or None
        None (the default) draws only when ``stream`` is a terminal; True always draws,
        False never does.
    stream : file-like, optional
        Where to draw; ``sys.stderr`` at the time of the call by default.

    Returns
    -------
    bar
        An object with ``update(n=1)``, ``set_description(desc)`` and ``close()``, usable as a
        context manager: a ``tqdm`` bar when tqdm is installed, else a plain one-line bar.
    """
    stream = sys.stderr if stream is None else stream
    if enabled is None:
        enabled = _isatty(stream)
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, desc, stream)
    return tqdm(total=total, desc=desc, file=stream, leave=False)
