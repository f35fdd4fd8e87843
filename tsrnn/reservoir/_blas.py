"""BLAS for the ridge readout's sums: a symmetric rank-k update that releases the GIL, and
the BLAS thread settings.

scipy's Python wrappers of BLAS (``scipy.linalg.blas``) hold the GIL while they compute, so
two Python threads adding to two Gram matrices take turns (measured: 0.46 s side by side
against 0.38 s one after the other). The same routine reached through
``scipy.linalg.cython_blas`` (a public table of C function pointers to scipy's BLAS) and
called by ctypes runs without the GIL: the two threads then finish in 0.21 s. Where that
table cannot be read, :func:`syrk_lower` falls back to the Python wrapper (same result,
serialised).

The thread count BLAS uses is the caller's: :func:`blas_threads` reads it (the smallest limit
among the loaded BLAS libraries, as threadpoolctl reports it) and :func:`limit_blas` lowers
it for a block of code, through one cached threadpoolctl controller (building one scans the
process's libraries, 3-30 ms).
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

import numpy as np
import scipy.linalg.blas as scipy_blas

_LOCK = threading.Lock()
_SYRK = None  # the ctypes function, False where it cannot be had
_CONTROLLER = None


def _cython_blas_syrk():
    """scipy's dsyrk as a ctypes function that releases the GIL, or False."""
    global _SYRK
    with _LOCK:
        if _SYRK is None:
            try:
                import scipy.linalg.cython_blas as cython_blas

                capsule = cython_blas.__pyx_capi__["dsyrk"]
                name = ctypes.pythonapi.PyCapsule_GetName
                name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
                pointer = ctypes.pythonapi.PyCapsule_GetPointer
                pointer.restype = ctypes.c_void_p
                pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
                address = pointer(capsule, name(capsule))
                integer, real = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_double)
                # dsyrk(uplo, trans, n, k, alpha, a, lda, beta, c, ldc), Fortran conventions
                # (every argument by reference); CFUNCTYPE calls release the GIL.
                prototype = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, integer,
                                             integer, real, ctypes.c_void_p, integer, real,
                                             ctypes.c_void_p, integer)
                _SYRK = prototype(address) if address else False
            except (ImportError, AttributeError, KeyError, TypeError, ValueError):
                _SYRK = False
    return _SYRK


def syrk_lower(rows: np.ndarray, gram: np.ndarray) -> None:
    """``gram += rows.T @ rows`` on the lower triangle only (BLAS dsyrk, in place).

    Parameters
    ----------
    rows : float64 array (R, F), C-contiguous
    gram : float64 array (F, F), Fortran-ordered; its strict upper triangle is not touched.
    """
    n_rows, width = rows.shape
    if gram.shape != (width, width) or gram.dtype != np.float64 or rows.dtype != np.float64:
        raise ValueError(f"rows {rows.shape} {rows.dtype} do not fit the float64 Gram matrix "
                         f"{gram.shape} {gram.dtype}")
    if not (rows.flags.c_contiguous and gram.flags.f_contiguous):
        raise ValueError("rows must be C-contiguous and gram Fortran-ordered")
    if n_rows == 0:
        return
    syrk = _cython_blas_syrk()
    if syrk and max(n_rows, width) < 2**31:
        # rows (R, F) in C order is rows.T (F, R) in Fortran order with leading dimension F:
        # gram += A A^T with A = rows.T, no copy.
        syrk(b"L", b"N", ctypes.byref(ctypes.c_int(width)), ctypes.byref(ctypes.c_int(n_rows)),
             ctypes.byref(ctypes.c_double(1.0)),
             ctypes.c_void_p(rows.__array_interface__["data"][0]),
             ctypes.byref(ctypes.c_int(width)), ctypes.byref(ctypes.c_double(1.0)),
             ctypes.c_void_p(gram.__array_interface__["data"][0]),
             ctypes.byref(ctypes.c_int(width)))
        return
    result = scipy_blas.dsyrk(1.0, rows.T, beta=1.0, c=gram, trans=0, lower=1, overwrite_c=1)
    if result is not gram:  # f2py made a copy after all
        gram[...] = result


def _controller():
    """A cached threadpoolctl controller of the loaded BLAS libraries, or None."""
    global _CONTROLLER
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # scikit-learn's dependency; without it BLAS keeps its own threads
        return None
    with _LOCK:
        if _CONTROLLER is None or not _CONTROLLER.lib_controllers:
            _CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _CONTROLLER


def blas_threads() -> int | None:
    """The number of threads BLAS may use now (the smallest among the loaded BLAS
    libraries), or None when it cannot be read."""
    controller = _controller()
    if controller is None or not controller.lib_controllers:
        return None
    return min(int(library.num_threads) for library in controller.lib_controllers)


def limit_blas(threads: int):
    """A context manager that limits BLAS to ``threads`` threads within it (a no-op without
    threadpoolctl). The limit is process-wide, as BLAS's own setting is."""
    controller = _controller()
    if controller is None or not controller.lib_controllers:
        return contextlib.nullcontext()
    return controller.limit(limits=int(threads), user_api="blas")
