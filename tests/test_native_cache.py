"""The compiled-kernel cache loads only what this user built (tsrnn._native)."""

import ctypes
import os

import pytest

from tsrnn import _native

SOURCE = "void answer(double *x) { x[0] = 42.0; }\n"


def _plant(path) -> None:
    """Replace ``path`` by a file that is not a library, as a new file: the loaded library
    stays mapped (writing into it in place would crash this process)."""
    planted = path.with_name("planted")
    planted.write_bytes(b"planted, not a library")
    os.replace(planted, path)


def _answer(library) -> float:
    value = ctypes.c_double(0.0)
    library.answer(ctypes.byref(value))
    return value.value


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "kernels"
    monkeypatch.setenv("TSRNN_KERNEL_CACHE", str(folder))
    monkeypatch.delenv("TSRNN_NO_NATIVE", raising=False)
    monkeypatch.setattr(_native, "_PRIVATE", [])
    monkeypatch.delitem(_native._LOADED, "answer", raising=False)
    yield folder
    _native._LOADED.pop("answer", None)


def _load():
    return _native.load_library("answer", SOURCE, ["answer"], (_native.PLAIN_FLAGS,))


@pytest.fixture
def planted(cache):
    """The cached library, replaced by a planted file (after one build and load)."""
    if _load() is None:
        pytest.skip("no C compiler")
    (built,) = cache.glob("answer_*.so")
    _plant(built)
    _native._LOADED.pop("answer")  # loaded again on the next call
    return built


def test_kernels_are_cached_in_a_folder_only_this_user_can_write(cache):
    library = _load()
    if library is None:
        pytest.skip("no C compiler")
    assert _answer(library) == 42.0
    (built,) = cache.glob("answer_*.so")
    assert cache.stat().st_mode & 0o777 == 0o700
    assert not built.stat().st_mode & 0o022


def test_a_folder_others_can_write_to_is_not_trusted(cache, planted):
    # Was: a world-writable folder at the cache's name was used, and a library planted in
    # it ran in the process.
    os.chmod(cache, 0o777)
    library = _load()
    assert library is not None and _answer(library) == 42.0  # built in a private folder
    assert _native._PRIVATE and _native._PRIVATE[0] != cache
    assert planted.read_bytes() == b"planted, not a library"


def test_a_file_others_can_write_to_is_not_loaded(planted):
    os.chmod(planted, 0o666)
    library = _load()
    assert library is not None and _answer(library) == 42.0
