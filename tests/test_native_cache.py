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


def test_the_cache_key_holds_the_target_the_compiler_builds_for(cache, monkeypatch):
    # A home folder shared by machines with different CPUs: a library built for AVX-512
    # and loaded where there is none dies with SIGILL. Another target is another file.
    if _load() is None:
        pytest.skip("no C compiler")
    (first,) = cache.glob("answer_*.so")
    monkeypatch.setattr(_native, "_target", lambda compiler, flags: "another CPU")
    _native._LOADED.pop("answer")
    assert _answer(_load()) == 42.0
    built = sorted(cache.glob("answer_*.so"))
    assert len(built) == 2 and first in built
    stems = {path.name.split("-")[0] for path in built}
    assert len(stems) == 2


def test_a_damaged_library_is_built_again(cache):
    # Cut short (a full disk, an interrupted copy): loading it would end the process with
    # SIGBUS. Its bytes no longer match its name, so it is deleted and built anew.
    if _load() is None:
        pytest.skip("no C compiler")
    (built,) = cache.glob("answer_*.so")
    intact = built.read_bytes()
    cut = built.with_name("cut")
    cut.write_bytes(intact[: len(intact) // 2])
    os.chmod(cut, 0o755)
    os.replace(cut, built)  # a new file: the loaded library stays mapped
    _native._LOADED.pop("answer")
    assert _answer(_load()) == 42.0
    (rebuilt,) = cache.glob("answer_*.so")
    assert rebuilt.read_bytes() != intact[: len(intact) // 2]


def test_a_cache_folder_that_cannot_take_a_build_falls_back_to_a_private_one(
        cache, monkeypatch):
    # A read-only mount or a full disk: the build goes to this process's own folder.
    build_in = _native._build_in

    def refusing(folder, *args):
        if folder == cache:
            raise OSError(28, "No space left on device")
        return build_in(folder, *args)

    monkeypatch.setattr(_native, "_build_in", refusing)
    library = _load()
    if library is None:
        pytest.skip("no C compiler")
    assert _answer(library) == 42.0
    assert not list(cache.glob("answer_*.so"))
    assert list(_native._PRIVATE[0].glob("answer_*.so"))


def test_the_compiler_named_by_cc_is_used(cache, monkeypatch, tmp_path):
    import shutil

    real = shutil.which("cc")
    if real is None:
        pytest.skip("no C compiler")
    log = tmp_path / "calls"
    wrapper = tmp_path / "my-cc"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    assert _answer(_load()) == 42.0
    assert "-shared" in log.read_text()


def test_kernels_that_use_openmp_build_without_it(cache, monkeypatch, tmp_path):
    # Apple's clang has no OpenMP: the LTC and ESN kernels build without it (one thread).
    import shutil

    from tsrnn.nn import _ltc_cpu
    from tsrnn.reservoir import _esn_cpu

    real = shutil.which("cc")
    if real is None:
        pytest.skip("no C compiler")
    wrapper = tmp_path / "cc-without-openmp"
    wrapper.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && exit 1; done\n'
                       f'exec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CC", str(wrapper))
    saved = {name: _native._LOADED.pop(name, None) for name in ("ltc", "esn")}
    try:
        assert _ltc_cpu._library() is not None
        assert _esn_cpu._library() is not None
    finally:
        for name, library in saved.items():
            _native._LOADED.pop(name, None)
            if library is not None:
                _native._LOADED[name] = library
