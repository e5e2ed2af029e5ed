"""The Planetoid loader: the restricted unpickler, fabricated Cora-format files, and the real files when present."""

from __future__ import annotations

import collections
import hashlib
import pickle

import numpy as np
import pytest
import scipy.sparse

from rbpsolve.adapters.tasks.data import DataFileError, data_root
from rbpsolve.adapters.tasks.data import planetoid
from rbpsolve.adapters.tasks.data._unpickle import UnsafePickleError, restricted_loads
from rbpsolve.adapters.tasks.data.planetoid import SUFFIXES, load_planetoid, read_planetoid_file


def _present(name, suffixes=SUFFIXES):
    return all((data_root() / "planetoid" / f"ind.{name}.{s}").is_file() for s in suffixes)


def real(name, suffixes=SUFFIXES):
    return pytest.mark.skipif(not _present(name, suffixes),
                              reason=f"real ind.{name}.* files not found under $RBPSOLVE_DATA/planetoid "
                                     "(set RBPSOLVE_DATA to ../shared/data)")


# -- the restricted unpickler -------------------------------------------------------------------------------------


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


@pytest.mark.parametrize("protocol", [2, 4])
def test_os_system_is_refused_and_nothing_runs(tmp_path, protocol):
    import os

    marker = tmp_path / "ran"
    data = pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=protocol)
    with pytest.raises(UnsafePickleError, match=r"system.*not one of the numpy/scipy.sparse classes"):
        restricted_loads(data, source="evil.pkl")
    assert not marker.exists()


def test_builtins_eval_is_refused_and_nothing_runs():
    import builtins

    sentinel = []
    builtins._rbpsolve_test_sentinel = sentinel
    try:
        data = pickle.dumps(_Evil(eval, "_rbpsolve_test_sentinel.append(1)"), protocol=2)
        with pytest.raises(UnsafePickleError, match=r"(__builtin__|builtins)\.eval"):
            restricted_loads(data)
        assert sentinel == []
    finally:
        del builtins._rbpsolve_test_sentinel


def test_a_nested_forbidden_name_is_refused():
    # The forbidden call sits inside an otherwise allowed structure.
    import subprocess

    data = pickle.dumps({"x": [1, _Evil(subprocess.call, "true")]}, protocol=2)
    with pytest.raises(UnsafePickleError, match=r"(subprocess|commands)\.call"):  # protocol 2 renames it
        restricted_loads(data)


def test_codecs_encode_only_as_latin1_bytes():
    import codecs

    assert restricted_loads(pickle.dumps(b"\x00\xff", protocol=2)) == b"\x00\xff"
    with pytest.raises(UnsafePickleError, match="latin1"):
        restricted_loads(pickle.dumps(_Evil(codecs.encode, "abc", "rot13"), protocol=2))


def test_allowed_objects_round_trip():
    m = scipy.sparse.csr_matrix(np.array([[0, 1.5], [2, 0]], dtype=np.float32))
    g = collections.defaultdict(list, {0: [1], 1: [0]})
    a = np.array([[1, 0], [0, 1]], dtype=np.int32)
    out = restricted_loads(pickle.dumps((m, g, a), protocol=2))
    assert (out[0] != m).nnz == 0 and out[1] == g and np.array_equal(out[2], a)


# -- Cora-format fixtures ------------------------------------------------------------------------------------------

# 7 nodes, 3 features, 2 classes: allx = nodes 0..3 (x = nodes 0..1), tx = nodes given by test.index in file order.
# Node 5 is left out of test.index (Citeseer's quirk: isolated ids).
ALLX = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32)
TX = np.array([[0, 2, 0], [3, 0, 0]], dtype=np.float32)  # rows for nodes 6 and 4
TEST_INDEX = [6, 4]
ALLY = np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
TY = np.array([[0, 1], [1, 0]])
GRAPH = collections.defaultdict(list, {0: [1, 1, 2], 1: [0], 2: [0, 2], 3: [4], 4: [3, 6], 5: [], 6: [4]})


def _write_fixture(root, monkeypatch, name="pubmed", **override):
    folder = root / "planetoid"
    folder.mkdir(parents=True, exist_ok=True)
    objects = dict(x=scipy.sparse.csr_matrix(ALLX[:2]), y=ALLY[:2], tx=scipy.sparse.csr_matrix(TX), ty=TY,
                   allx=scipy.sparse.csr_matrix(ALLX), ally=ALLY, graph=GRAPH)
    objects.update(override)
    table = {}
    for suffix in SUFFIXES:
        if suffix == "test.index":
            raw = "".join(f"{i}\n" for i in TEST_INDEX).encode()
        else:
            raw = pickle.dumps(objects[suffix], protocol=2)
        (folder / f"ind.{name}.{suffix}").write_bytes(raw)
        table[suffix] = (len(raw), hashlib.sha256(raw).hexdigest())
    monkeypatch.setitem(planetoid.PLANETOID_FILES, name, table)
    return folder


def test_fixture_full_path(tmp_path, monkeypatch):
    _write_fixture(tmp_path, monkeypatch)
    g = load_planetoid("pubmed", root=tmp_path)
    assert g.features.shape == (7, 3) and g.features.dtype == np.float32 and scipy.sparse.isspmatrix_csr(g.features)
    dense = g.features.toarray()
    assert np.array_equal(dense[:4], ALLX)
    assert np.array_equal(dense[6], TX[0]) and np.array_equal(dense[4], TX[1])
    assert not dense[5].any()
    assert g.labels.tolist() == [0, 1, 0, 1, 0, -1, 1] and g.labels.dtype == np.int64
    assert g.num_classes == 2 and g.labeled_ids.tolist() == [0, 1, 2, 3, 4, 6]
    # Undirected, each direction once, no duplicates, self-loop of node 2 dropped.
    pairs = set(map(tuple, g.edges.T.tolist()))
    assert pairs == {(0, 1), (1, 0), (0, 2), (2, 0), (3, 4), (4, 3), (4, 6), (6, 4)}
    assert g.edges.shape == (2, 8) and g.edges.dtype == np.int64 and g.self_loops == 1
    assert g.train_ids.tolist() == [0, 1] and g.test_ids.tolist() == [4, 6]


def test_fixture_altered_file_is_named(tmp_path, monkeypatch):
    folder = _write_fixture(tmp_path, monkeypatch)
    path = folder / "ind.pubmed.graph"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFileError, match=r"ind\.pubmed\.graph has sha256"):
        load_planetoid("pubmed", root=tmp_path)


def test_fixture_with_a_forbidden_name_is_refused(tmp_path, monkeypatch):
    # Even a file whose checksum matches the table is unpickled without running anything.
    import os

    marker = tmp_path / "ran"
    _write_fixture(tmp_path, monkeypatch, graph=_Evil(os.system, f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match=r"ind\.pubmed\.graph names"):
        load_planetoid("pubmed", root=tmp_path)
    assert not marker.exists()


def test_fixture_inconsistent_files(tmp_path, monkeypatch):
    _write_fixture(tmp_path, monkeypatch, ty=TY[:1])
    with pytest.raises(DataFileError, match="disagree"):
        load_planetoid("pubmed", root=tmp_path)


def test_missing_pubmed_allx_is_named(tmp_path, monkeypatch):
    folder = _write_fixture(tmp_path, monkeypatch)
    monkeypatch.setitem(planetoid.PLANETOID_FILES["pubmed"], "allx", (7578385, "508e538e" + "0" * 56))
    (folder / "ind.pubmed.allx").unlink()
    with pytest.raises(DataFileError, match=r"ind\.pubmed\.allx is missing.*7,578,385 bytes.*508e538e"):
        load_planetoid("pubmed", root=tmp_path)


def test_unknown_name():
    with pytest.raises(ValueError, match="cora, citeseer, pubmed"):
        load_planetoid("karate")


# -- real files ---------------------------------------------------------------------------------------------------


def _check_graph(g, n, f, classes, n_edges):
    assert g.features.shape == (n, f) and g.labels.shape == (n,)
    assert g.num_classes == classes and g.edges.shape == (2, n_edges)
    src, dst = g.edges
    assert (src != dst).all()
    keys = src * n + dst
    assert np.unique(keys).size == keys.size  # no duplicates
    assert np.array_equal(np.sort(keys), np.sort(dst * n + src))  # symmetric


@real("cora")
def test_real_cora():
    g = load_planetoid("cora")
    _check_graph(g, 2708, 1433, 7, 10556)  # 5278 undirected edges
    assert (g.labels >= 0).all() and len(g.train_ids) == 140 and len(g.test_ids) == 1000
    assert np.bincount(g.labels).tolist() == [351, 217, 418, 818, 426, 298, 180]


@real("citeseer")
def test_real_citeseer_isolated_ids():
    g = load_planetoid("citeseer")
    _check_graph(g, 3327, 3703, 6, 9104)
    unlabeled = np.flatnonzero(g.labels < 0)
    assert unlabeled.size == 15 and unlabeled.min() >= 2312  # isolated ids inside the test range
    assert g.features[unlabeled].nnz == 0


@real("pubmed", [s for s in SUFFIXES if s != "allx"])
def test_real_pubmed_without_allx():
    if _present("pubmed"):
        pytest.skip("ind.pubmed.allx is present here; the missing-file message is tested on fixtures")
    with pytest.raises(DataFileError, match=r"ind\.pubmed\.allx is missing.*7,578,385 bytes.*508e538e2abd"):
        load_planetoid("pubmed")
    assert read_planetoid_file("pubmed", "x").shape == (60, 500)
    tx = read_planetoid_file("pubmed", "tx")
    assert tx.shape == (1000, 500) and tx.nnz == 50140 and tx.dtype == np.float32
    assert read_planetoid_file("pubmed", "ally").shape == (18717, 3)
    assert read_planetoid_file("pubmed", "ty").shape == (1000, 3)
    assert len(read_planetoid_file("pubmed", "graph")) == 19717
    ids = read_planetoid_file("pubmed", "test.index")
    assert ids.size == 1000 and ids.min() >= 18717 and ids.max() <= 19716
