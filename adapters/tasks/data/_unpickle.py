"""A restricted unpickler: reads the Planetoid pickles without letting them run code.

A pickle names callables (``GLOBAL module name``) that the loader calls to rebuild objects,
so ``pickle.load`` on an untrusted file is arbitrary code execution. :class:`RestrictedUnpickler`
resolves a name only if it is one of the few classes the Planetoid files use, mapped straight
to the object (nothing is imported by name), and refuses every other name before anything runs.
"""

from __future__ import annotations

import collections
import io
import pickle

import numpy as np
import scipy.sparse

__all__ = ["UnsafePickleError", "RestrictedUnpickler", "restricted_loads"]


def _numpy_reconstruct():
    # numpy >= 2 keeps the implementation in numpy._core; numpy.core is a deprecated alias.
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as Python 3 writes bytes into a protocol-2 pickle; latin1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"_codecs.encode is admitted only as (str, 'latin1'); got ({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


#: (module, name) as written in the pickle -> the object it stands for. The Planetoid files
#: (Python 2, protocol 2) name exactly these: see pickletools.dis on any ind.<name>.* file.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct(),
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("scipy.sparse.csr", "csr_matrix"): scipy.sparse.csr_matrix,
    ("scipy.sparse._csr", "csr_matrix"): scipy.sparse.csr_matrix,
    ("collections", "defaultdict"): collections.defaultdict,
    ("__builtin__", "list"): list,
    ("builtins", "list"): list,
    # Python 3 writes bytes (numpy buffers) into protocol-2 pickles as _codecs.encode(str, "latin1").
    ("_codecs", "encode"): _latin1_bytes,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle named a callable outside :data:`ALLOWED`; nothing it named was called."""


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only :data:`ALLOWED`.

    Parameters
    ----------
    file : binary file
        The pickle.
    source : str
        How to name the pickle in an error (its path).

    Notes
    -----
    Every callable a pickle can invoke (``REDUCE``, ``NEWOBJ``, ``INST``, ``OBJ``, ``BUILD``
    through ``__setstate__``) is first fetched by ``find_class``, so refusing there refuses
    it before it can run. ``persistent_load`` is refused too. Strings are decoded as
    ``latin1`` so numpy's Python 2 byte buffers come through byte for byte.
    """

    def __init__(self, file, *, source: str = "<pickle>"):
        super().__init__(file, encoding="latin1", fix_imports=False)
        self._source = source

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            allowed = ", ".join(sorted(f"{m}.{n}" for m, n in ALLOWED))
            raise UnsafePickleError(
                f"{self._source} names {module}.{name}, which is not one of the numpy/scipy.sparse classes a "
                f"Planetoid file may contain ({allowed}); refusing to load it (unpickling runs code). "
                f"Check that the file is the published one (its sha256)."
            ) from None

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self._source} uses a persistent id ({pid!r}); a Planetoid file has none")


def restricted_loads(data: bytes, *, source: str = "<pickle>"):
    """Unpickle ``data`` with :class:`RestrictedUnpickler`.

    Raises
    ------
    UnsafePickleError
        If the pickle names anything outside :data:`ALLOWED`.
    """
    return RestrictedUnpickler(io.BytesIO(data), source=source).load()
