"""Compiled CPU kernels: build C source on first use and load it through ctypes.

The few CPU hot loops that torch cannot run fast (a whole-sequence recurrence of small
matrices, where each torch call costs more than its arithmetic) are written in C inside their
modules (:mod:`tsrnn.nn._cfc_cpu`, :mod:`tsrnn.nn._ltc_cpu`, :mod:`tsrnn.reservoir._esn_cpu`)
and compiled here with the system compiler ``cc`` into a per-user cache folder
(``TSRNN_KERNEL_CACHE`` if set, else ``$XDG_CACHE_HOME/tsrnn/kernels``, by default
``~/.cache/tsrnn/kernels``), named by a hash of the source and the flags, so a build happens
once per machine and user. A library is loaded only from a folder that is the user's own and
writable by nobody else, and only if the file is too: a folder another account could write
to (a planted one in a shared temporary directory, say) would let its code run in this
process. Where the cache folder fails that test, or cannot be made, the kernels are built in
a private temporary folder for this process alone, removed at exit. Everything is optional:
where no compiler works, or the environment variable ``TSRNN_NO_NATIVE`` is set,
:func:`load_library` returns None and the callers keep their torch or numpy path.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

# -ffast-math lets the compiler vectorise exp/tanh through glibc's libmvec and contract
# multiply-adds. It is given to the compile step only: linking with it would add
# crtfastmath, which switches the whole process to flush-to-zero on load and would change
# torch's results too. Each pair of (compile, link) flags is tried in turn.
FAST_FLAGS = (["-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC"],
              ["-shared", "-fopenmp"])
PLAIN_FLAGS = (["-O3", "-ffast-math", "-fPIC"], ["-shared"])

_LOCK = threading.Lock()
_LOADED: dict[str, ctypes.CDLL | None] = {}


def cache_folder() -> Path:
    """Where compiled kernels are kept (one folder per user; see the module docstring)."""
    configured = os.environ.get("TSRNN_KERNEL_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tsrnn" / "kernels"


def _owned_privately(path: Path, directory: bool) -> bool:
    """Whether ``path`` (not a link) belongs to this user and nobody else can write to it."""
    try:
        info = path.lstat()
    except OSError:
        return False
    kind = stat.S_ISDIR if directory else stat.S_ISREG
    return (kind(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


_PRIVATE: list[Path] = []


def _private_folder() -> Path:
    """A temporary folder of this process alone (mode 0700), removed at exit."""
    if not _PRIVATE:
        _PRIVATE.append(Path(tempfile.mkdtemp(prefix="tsrnn-kernels-")))
        atexit.register(shutil.rmtree, _PRIVATE[0], True)
    return _PRIVATE[0]


def _build_folder() -> Path:
    """The cache folder if it is (or can be made) this user's own, else a private one."""
    try:
        folder = cache_folder()  # (no home directory at all raises RuntimeError)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (OSError, RuntimeError):
        return _private_folder()
    return folder if _owned_privately(folder, directory=True) else _private_folder()


def _build(name: str, source: str, compile_flags: Sequence[str],
           link_flags: Sequence[str]) -> Path:
    digest = hashlib.sha256((source + " ".join(compile_flags)).encode()).hexdigest()[:16]
    path = _build_folder() / f"{name}_{digest}.so"
    if path.exists() and not _owned_privately(path, directory=False):
        path = _private_folder() / path.name  # someone else's file: build our own
    if path.exists():
        return path
    folder = path.parent
    # Per-process names until the final rename: processes that build at the same time never
    # read each other's half-written files.
    stem = f"{name}_{digest}.{os.getpid()}"
    source_file, objects, partial = (folder / f"{stem}{end}" for end in (".c", ".o", ".so"))
    source_file.write_text(source)
    try:
        subprocess.run(["cc", *compile_flags, "-c", str(source_file), "-o", str(objects)],
                       check=True, capture_output=True, timeout=120)
        subprocess.run(["cc", *link_flags, str(objects), "-o", str(partial), "-lm"],
                       check=True, capture_output=True, timeout=120)
        # Nobody else may write to it whatever the umask: the check above would refuse it.
        os.chmod(partial, stat.S_IMODE(partial.stat().st_mode) & ~0o022)
        os.replace(partial, path)
    finally:
        for leftover in (source_file, objects, partial):
            leftover.unlink(missing_ok=True)
    return path


def load_library(name: str, source: str, functions: Iterable[str],
                 flag_sets: Sequence[tuple[Sequence[str], Sequence[str]]] = (FAST_FLAGS,)
                 ) -> ctypes.CDLL | None:
    """The compiled library ``name`` (built from ``source`` on first use), or None.

    Parameters
    ----------
    name : str
        Short name of the kernel, unique in tsrnn (file names and the in-process cache).
    source : str
        The C source.
    functions : iterable of str
        Exported functions; each gets ``restype = None`` (the kernels write into buffers).
    flag_sets : sequence of (compile flags, link flags)
        Tried in turn until one builds and loads.
    """
    with _LOCK:
        if name in _LOADED:
            return _LOADED[name]
        _LOADED[name] = None
        if os.environ.get("TSRNN_NO_NATIVE"):
            return None
        for compile_flags, link_flags in flag_sets:
            try:
                library = ctypes.CDLL(str(_build(name, source, compile_flags, link_flags)))
            except (OSError, subprocess.SubprocessError):
                continue
            for function in functions:
                getattr(library, function).restype = None
            _LOADED[name] = library
            return library
        return None
