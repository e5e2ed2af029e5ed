"""adapters/tasks/data/_files.py: where the data directory is, checksum checks, atomic downloads."""

from __future__ import annotations

import hashlib

import pytest

from rbpsolve.adapters.tasks.data import DataFileError, data_root, download, verified_path
from rbpsolve.adapters.tasks.data import _files


def _sha(blob):
    return hashlib.sha256(blob).hexdigest()


def test_root_argument_beats_env_beats_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RBPSOLVE_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("RBPSOLVE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if _files.sys.platform.startswith("linux"):
        assert data_root() == tmp_path / "cache" / "rbpsolve" / "data"
    assert data_root() == _files._cache_dir()


def test_empty_env_falls_back_to_cache(monkeypatch):
    monkeypatch.setenv("RBPSOLVE_DATA", "")
    assert data_root() == _files._cache_dir()


def test_verified_path_accepts_good_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hello")
    assert verified_path(path, sha256=_sha(b"hello"), size=5) == path


def test_verified_path_missing(tmp_path):
    with pytest.raises(DataFileError, match=r"f\.bin is missing\. do this"):
        verified_path(tmp_path / "f.bin", sha256="0" * 64, hint="do this")


def test_verified_path_wrong_size(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"hell")
    with pytest.raises(DataFileError, match="has 4 bytes but the published file has 5: it is truncated"):
        verified_path(path, sha256=_sha(b"hello"), size=5)


def test_verified_path_wrong_checksum(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"jello")
    with pytest.raises(DataFileError, match="altered or corrupt"):
        verified_path(path, sha256=_sha(b"hello"), size=5)


def test_download_file_url_is_atomic(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"payload" * 100)
    dest = tmp_path / "out" / "dest.bin"
    got = download([(tmp_path / "absent.bin").as_uri(), src.as_uri()], dest,
                   sha256=_sha(src.read_bytes()), size=700)
    assert got == dest and dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["dest.bin"]  # no .part left behind


def test_download_bad_checksum_leaves_no_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"tampered")
    dest = tmp_path / "out" / "dest.bin"
    with pytest.raises(DataFileError, match=r"could not fetch dest\.bin:\n.*altered"):
        download([src.as_uri()], dest, sha256=_sha(b"original"))
    assert list(dest.parent.iterdir()) == []


def test_download_does_not_replace_good_file_on_failure(tmp_path):
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"keep me")
    with pytest.raises(DataFileError):
        download([(tmp_path / "nothing").as_uri()], dest, sha256="0" * 64)
    assert dest.read_bytes() == b"keep me"
