"""Compiled CPU kernels: build C source on first use and load it through ctypes.

The few CPU hot loops that torch cannot run fast (a whole-sequence recurrence of small
matrices, where each torch call costs more than its arithmetic) are written in C inside their
modules (:mod:`tsrnn.nn._cfc_cpu`, :mod:`tsrnn.nn._ltc_cpu`, :mod:`tsrnn.reservoir._esn_cpu`)
and compiled here with the system compiler (``$CC``, else ``cc``) into a per-user cache
folder (``TSRNN_KERNEL_CACHE`` if set, else ``$XDG_CACHE_HOME/tsrnn/kernels``, by default
``~/.cache/tsrnn/kernels``), so a build happens once per machine and user.

A cached library is named by a hash of its source, its flags and its target, and carries
a hash of its own bytes in its name:

- the target is what the compiler makes of the flags here (its predefined macros: the
  instruction sets ``-march=native`` turns on, the compiler and its version) and the
  machine's architecture. A cache shared between machines (a home folder on a cluster's
  network file system) then holds one build per kind of CPU: a library built for AVX-512
  and loaded on a CPU without it would kill the process (SIGILL).
- a file whose bytes do not match its name (cut short by a full disk or an interrupted
  copy, which would kill the process with SIGBUS when run) is deleted and built again.

A library is loaded only from a folder that is the user's own and writable by nobody else,
and only if the file is too: a folder another account could write to (a planted one in a
shared temporary directory, say) would let its code run in this process. Where the cache
folder fails that test, cannot be made, or cannot take a build (read-only, full), the
kernels are built in a private temporary folder for this process alone, removed at exit.
Everything is optional: where no compiler works, on systems other than POSIX ones, or where
the environment variable ``TSRNN_NO_NATIVE`` is set, :func:`load_library` returns None and
the callers keep their torch or numpy path.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import platform
import shlex
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


def _compiler() -> list[str]:
    """The C compiler command: ``$CC`` (conda's compilers set it), else ``cc``."""
    return shlex.split(os.environ.get("CC") or "cc")


_TARGETS: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}


def _target(compiler: list[str], compile_flags: Sequence[str]) -> str:
    """A digest of the code ``compile_flags`` make here: the compiler's predefined macros
    for them (instruction sets, compiler and version) and the machine's architecture."""
    key = (tuple(compiler), tuple(compile_flags))
    if key not in _TARGETS:
        macros = subprocess.run([*compiler, *compile_flags, "-dM", "-E", "-x", "c", os.devnull],
                                check=True, capture_output=True, timeout=120).stdout
        _TARGETS[key] = hashlib.sha256(macros + platform.machine().encode()).hexdigest()
    return _TARGETS[key]


def _content_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _cached(folder: Path, stem: str) -> Path | None:
    """A sound library ``{stem}-{digest of its bytes}.so`` of this user's in ``folder``;
    damaged ones are deleted on the way."""
    for path in sorted(folder.glob(f"{stem}-*.so")):
        if not _owned_privately(path, directory=False):
            continue  # not this user's alone: never loaded
        try:
            if _content_digest(path) == path.stem.rpartition("-")[2]:
                return path
            path.unlink()  # cut short or overwritten: built again
        except OSError:
            continue
    return None


def _build_in(folder: Path, stem: str, source: str, compiler: list[str],
              compile_flags: Sequence[str], link_flags: Sequence[str]) -> Path:
    # A work folder of this call alone: builds running at the same time (processes, or
    # containers whose processes share a PID) never touch each other's files.
    work = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=folder))
    try:
        source_file, objects, partial = (work / f"kernel{end}" for end in (".c", ".o", ".so"))
        source_file.write_text(source)
        subprocess.run([*compiler, *compile_flags, "-c", str(source_file), "-o", str(objects)],
                       check=True, capture_output=True, timeout=120)
        subprocess.run([*compiler, *link_flags, str(objects), "-o", str(partial), "-lm"],
                       check=True, capture_output=True, timeout=120)
        # Nobody else may write to it whatever the umask: _cached would refuse it.
        os.chmod(partial, stat.S_IMODE(partial.stat().st_mode) & ~0o022)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())  # on disk before it has a name others load
        path = folder / f"{stem}-{_content_digest(partial)}.so"
        os.replace(partial, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _build(name: str, source: str, compile_flags: Sequence[str],
           link_flags: Sequence[str]) -> Path:
    compiler = _compiler()
    key = "\n".join([source, " ".join(compiler), " ".join(compile_flags), " ".join(link_flags),
                     _target(compiler, compile_flags)])
    stem = f"{name}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    folder = _build_folder()
    found = _cached(folder, stem)
    if found is not None:
        return found
    try:
        return _build_in(folder, stem, source, compiler, compile_flags, link_flags)
    except (OSError, subprocess.SubprocessError):
        private = _private_folder()
        if folder == private:
            raise
        # The cache folder may not take the build (read-only, full); this process's own
        # folder may. (Flags this compiler refuses fail there too, at the cost of a second
        # try.)
        return (_cached(private, stem)
                or _build_in(private, stem, source, compiler, compile_flags, link_flags))


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
        if os.environ.get("TSRNN_NO_NATIVE") or os.name != "posix":
            return None
        for compile_flags, link_flags in flag_sets:
            try:
                library = ctypes.CDLL(str(_build(name, source, compile_flags, link_flags)))
            except Exception:  # an accelerator: any failure keeps the fallback path
                continue
            for function in functions:
                getattr(library, function).restype = None
            _LOADED[name] = library
            return library
        return None
