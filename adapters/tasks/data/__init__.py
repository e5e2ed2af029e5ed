"""Loaders for the real data sets of the reference tasks: checksum-verified, never unpickling code.

The data directory is the ``root`` argument, else the ``RBPSOLVE_DATA`` environment variable,
else a user cache directory (:func:`data_root`).
"""

from ._files import DataFileError, data_root, download, verified_path

__all__ = ["DataFileError", "data_root", "download", "verified_path"]
