"""Per-viewer registries keyed by identity.

napari's Viewer hashes by ``id`` but compares by field values (EventedModel), so a
``WeakKeyDictionary`` can hand one viewer's entry to another that looks the same when an id
is reused before the dead key is purged. Keys here are ids checked against a weak
reference to the very object.
"""

from __future__ import annotations

import weakref
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def real_viewer(viewer):
    """The viewer behind what napari hands a plugin widget.

    napari gives each dock its own ``PublicOnlyProxy`` of the viewer (a ``wrapt`` object
    proxy), a new object per dock: keyed by identity, five docks would make five sessions of
    one viewer. ``__wrapped__`` is the proxy's public, documented handle on the object it wraps.
    """
    seen = 0
    while hasattr(type(viewer), "__wrapped__") and seen < 8:
        viewer = viewer.__wrapped__
        seen += 1
    return viewer


class PerViewer(Generic[T]):
    def __init__(self) -> None:
        self._items: dict[int, tuple[weakref.ref, T]] = {}

    def get(self, viewer) -> T | None:
        viewer = real_viewer(viewer)
        hit = self._items.get(id(viewer))
        if hit is None or hit[0]() is not viewer:
            return None
        return hit[1]

    def set(self, viewer, value: T) -> None:
        viewer = real_viewer(viewer)
        key = id(viewer)
        self._items[key] = (weakref.ref(viewer, lambda _ref, key=key: self._items.pop(key, None)), value)

    def __contains__(self, viewer: Any) -> bool:
        return self.get(viewer) is not None
