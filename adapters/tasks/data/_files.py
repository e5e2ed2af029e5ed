"""Where data files live, checking them against published checksums, and fetching them.

Every loader goes through :func:`verified_path`, so a missing, truncated or altered file fails
with one kind of error that names the file and says what to do, before any parsing.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

__all__ = ["DataFileError", "data_root", "download", "verified_path"]

ENV_VAR = "RBPSOLVE_DATA"
_ROOT_SOURCE = "the `root` argument"  # how messages name the directory's source; the commands reword it


class DataFileError(FileNotFoundError):
    """A data file is missing, has the wrong size or checksum, or does not parse."""


def _cache_dir() -> Path:
    # The platform's user cache directory, without a dependency for three lines.
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "rbpsolve" / "data"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$RBPSOLVE_DATA``, else the user cache.

    Parameters
    ----------
    root : path-like, optional
        Directory holding ``mnist/`` and ``planetoid/``.

    Returns
    -------
    pathlib.Path
        The directory (not created, not checked).
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    return _cache_dir()


def command_line_message(error: DataFileError, root: str | os.PathLike | None, option: str = "--data") -> str:
    """``error``'s message for a command whose option ``option`` gives the data directory.

    Names the option instead of the ``root`` argument, and says first if the directory given
    there does not exist.
    """
    message = str(error).replace(_ROOT_SOURCE, f"the {option} option")
    if root is not None and not data_root(root).is_dir():
        message = f"{option} {root}: no such directory. {message}"
    return message


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verified_path(path: Path, *, sha256: str, size: int | None = None, hint: str = "") -> Path:
    """Return ``path`` after checking that it exists and matches its published size and sha256.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    sha256 : str
        Expected hex digest.
    size : int, optional
        Expected size in bytes: checked first, so a truncated file is named as such cheaply.
    hint : str
        What to do about a problem (e.g. how to download the file), appended to the message.

    Raises
    ------
    DataFileError
        If the file is missing, has the wrong size, or the wrong checksum.
    """
    fix = f" {hint}" if hint else ""
    if not path.is_file():
        raise DataFileError(
            f"data file {path} is missing.{fix} The data directory comes from {_ROOT_SOURCE}, "
            f"else ${ENV_VAR}, else {_cache_dir()}."
        )
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise DataFileError(
            f"data file {path} has {actual_size} bytes but the published file has {size}: it is truncated or "
            f"a different file. Delete it and fetch it again.{fix}"
        )
    digest = sha256_of(path)
    if digest != sha256:
        raise DataFileError(
            f"data file {path} has sha256 {digest} but the published file has {sha256}: it is altered or "
            f"corrupt. Delete it and fetch it again.{fix}"
        )
    return path


def download(urls: list[str] | tuple[str, ...], dest: Path, *, sha256: str, size: int | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch a file from the first mirror that serves it intact, written atomically.

    The bytes go to a temporary file in ``dest``'s directory, are checked against ``sha256``
    (and ``size``), and only then renamed onto ``dest``, so an interrupted or corrupt download
    never leaves a file that looks valid.

    Parameters
    ----------
    urls : sequence of str
        Mirrors, tried in order.
    dest : pathlib.Path
        Where the file should end up.
    sha256, size
        The published checksum and size.
    timeout : float
        Seconds per connection attempt.

    Raises
    ------
    DataFileError
        If no mirror gave a file with the right checksum; the message lists each failure.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                while block := response.read(1 << 20):
                    out.write(block)
            verified_path(tmp, sha256=sha256, size=size)
            os.replace(tmp, dest)
            return dest
        except (OSError, DataFileError) as error:  # URLError is an OSError
            failures.append(f"{url}: {error}")
        finally:
            if tmp.exists():
                tmp.unlink()
    raise DataFileError(f"could not fetch {dest.name}:\n  " + "\n  ".join(failures))
