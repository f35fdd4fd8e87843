"""The one optional progress bar (tqdm), and nothing at all when it is off.

A disabled tqdm bar still starts tqdm's monitor thread in the caller's process; quiet by
default means no thread either, so a bar is built only when ``verbose`` asks for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class _NoBar:
    """What the estimators use of a tqdm bar, doing nothing."""

    def __init__(self, iterable: Iterable | None = None):
        self._iterable = iterable

    def __iter__(self):
        return iter(self._iterable)

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc_info) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(iterable: Iterable | None = None, *, verbose: bool, **options: Any):
    """``tqdm(iterable, **options)`` when ``verbose``, else an inert stand-in."""
    if not verbose:
        return _NoBar(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, **options)
