"""Where a frame goes in a viewer, from its components alone (no GUI here, so it is unit-tested).

napari: one layer per (plate, step, channel); the layer stacks planes over (well, site, t, z), each axis
holding the sorted values seen so far, so the sliders grow as wells arrive. Image layers are a
:class:`PlaneGrid` (each plane kept as it came, possibly the sender's shared-memory slot itself); label
layers a dense :class:`PlaneStack` (napari edits labels in place, so they must be the viewer's own
writable copy). Fiji: one hyperstack per (plate, well, site, step) with channels x z x time, the layout
ImageJ's hyperstack viewer expects.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from openhcs_rules.messaging.errors import TooManyLayersError
from openhcs_rules.plate.naming import parse_well_name
from openhcs_rules.streaming.frames import FrameMeta, Plane

NAPARI_AXES: tuple[str, ...] = ("well", "site", "t", "z")
FIJI_AXES: tuple[str, ...] = ("channel", "z", "t")


def layer_name(meta: FrameMeta) -> str:
    """The napari layer a frame belongs to: ``"<plate> | <step> | <channel>"``."""
    return f"{meta.plate} | {meta.step_name} | {meta.channel_label}"


def hyperstack_title(meta: FrameMeta) -> str:
    """The ImageJ hyperstack a frame belongs to: ``"<plate> <well> s<site> | <step>"``."""
    return f"{meta.plate} {meta.well} s{meta.site} | {meta.step_name}"


def coordinates(meta: FrameMeta, axes: Sequence[str]) -> dict[str, Any]:
    return {axis: getattr(meta, axis) for axis in axes}


def _sort_key(axis: str, value: Any) -> Any:
    if axis == "well":
        try:
            return (0, parse_well_name(value), value)
        except ValueError:
            return (1, (0, 0), value)
    return value


class AxisIndex:
    """The sorted values seen on each axis, and a value tuple's position in the stack."""

    def __init__(self, axes: Sequence[str]) -> None:
        self.axes = tuple(axes)
        self.values: dict[str, list[Any]] = {axis: [] for axis in self.axes}
        self._keys: dict[str, list[Any]] = {axis: [] for axis in self.axes}

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.values[axis]) for axis in self.axes)

    def add(self, coords: dict[str, Any]) -> list[tuple[str, int]]:
        """Record the coordinates; returns the (axis, position) of every value that is new."""
        inserted = []
        for axis in self.axes:
            value = coords[axis]
            if value in self.values[axis]:
                continue
            key = _sort_key(axis, value)
            position = bisect.bisect(self._keys[axis], key)
            self._keys[axis].insert(position, key)
            self.values[axis].insert(position, value)
            inserted.append((axis, position))
        return inserted

    def position(self, coords: dict[str, Any]) -> tuple[int, ...]:
        """Positions along each axis; KeyError names the value that has not been seen."""
        try:
            return tuple(self.values[axis].index(coords[axis]) for axis in self.axes)
        except ValueError:
            raise KeyError(f"{coords} is not in this stack (axes hold {self.values})") from None


class PlaneStack:
    """A growing numpy stack of same-shaped 2D planes: axes from :class:`AxisIndex`, then (y, x)."""

    def __init__(self, axes: Sequence[str], plane_shape: tuple[int, int], dtype: Any) -> None:
        self.index = AxisIndex(axes)
        self.plane_shape = tuple(plane_shape)
        self.data = np.zeros((0,) * len(self.index.axes) + self.plane_shape, dtype=dtype)

    def put(self, coords: dict[str, Any], plane: np.ndarray) -> bool:
        """Place a plane (cast to the stack's dtype); True when the stack had to grow (new array)."""
        if plane.shape != self.plane_shape:
            raise ValueError(f"plane of shape {plane.shape} does not fit a stack of {self.plane_shape} planes")
        inserted = self.index.add(coords)
        for axis, position in inserted:
            self.data = np.insert(self.data, position, 0, axis=self.index.axes.index(axis))
        self.data[self.index.position(coords)] = plane.astype(self.data.dtype, copy=False)
        return bool(inserted)

    def get(self, coords: dict[str, Any]) -> np.ndarray:
        return self.data[self.index.position(coords)]

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


class PlaneGrid:
    """A stack of 2D planes over named axes that napari shows as one array, each plane kept as it came.

    :class:`PlaneStack` copies every plane into one dense array (and the whole stack again whenever an axis
    grows). Here each plane stays the :class:`Plane` its frame was kept as - a view of the sender's
    shared-memory slot, or the viewer's own array - and napari reads, through the array-like protocol it
    accepts for lazy data (``shape``, ``dtype``, ``ndim``, indexing), only the planes it draws. A plane not
    sent yet reads as zeros. ``data`` is the grid itself, so the layer's data object never changes.
    """

    def __init__(self, axes: Sequence[str], plane_shape: tuple[int, int], dtype: Any) -> None:
        self.index = AxisIndex(axes)
        self.plane_shape = (int(plane_shape[0]), int(plane_shape[1]))
        self.dtype = np.dtype(dtype)
        self.planes: dict[tuple[Any, ...], Plane] = {}
        self._nbytes = 0  # a counter, so the control thread can read it while the GUI thread puts planes
        self._zeros = np.zeros(self.plane_shape, self.dtype)
        self._zeros.flags.writeable = False

    @property
    def data(self) -> PlaneGrid:
        return self

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.index.shape, *self.plane_shape)

    @property
    def ndim(self) -> int:
        return len(self.index.axes) + 2

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        """Bytes of the planes held (not of the dense array the grid stands for)."""
        return self._nbytes

    def __len__(self) -> int:
        return self.shape[0]

    def _key(self, coords: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(coords[axis] for axis in self.index.axes)

    def put(self, coords: dict[str, Any], plane: Plane) -> tuple[bool, Plane | None]:
        """Place a plane; returns (the grid grew, the plane it replaced - the caller drops that one)."""
        if tuple(plane.array.shape) != self.plane_shape:
            raise ValueError(f"plane of shape {plane.array.shape} does not fit a stack of {self.plane_shape} planes")
        inserted = self.index.add(coords)
        key = self._key(coords)
        replaced = self.planes.get(key)
        self.planes[key] = plane
        self._nbytes += int(plane.array.nbytes) - (int(replaced.array.nbytes) if replaced is not None else 0)
        return bool(inserted), (replaced if replaced is not plane else None)

    def get(self, coords: dict[str, Any]) -> np.ndarray:
        self.index.position(coords)  # KeyError for coordinates never seen, as PlaneStack
        return self._pixels(self.planes.get(self._key(coords)))

    def clear(self) -> list[Plane]:
        """Forget every plane; returns them for the caller to drop once nothing shows them."""
        planes = list(self.planes.values())
        self.planes.clear()
        self._nbytes = 0
        return planes

    def _pixels(self, plane: Plane | None) -> np.ndarray:
        array = self._zeros if plane is None else plane.array
        return array if array.dtype == self.dtype else array.astype(self.dtype)

    def _plane_at(self, position: tuple[int, ...]) -> np.ndarray:
        key = tuple(self.index.values[axis][i] for axis, i in zip(self.index.axes, position, strict=True))
        return self._pixels(self.planes.get(key))

    def __getitem__(self, key: Any) -> np.ndarray:
        """numpy basic indexing (integers, slices, an Ellipsis) over the grid; only the planes asked for are read."""
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = (*key[:at], *(slice(None),) * (self.ndim - len(key) + 1), *key[at + 1 :])
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for a {self.ndim}-dimensional grid")
        key = (*key, *(slice(None),) * (self.ndim - len(key)))
        lead, tail = key[: len(self.index.axes)], key[len(self.index.axes) :]
        picks: list[list[int]] = []
        for size, k in zip(self.index.shape, lead, strict=True):
            if isinstance(k, int | np.integer):
                i = int(k) + size if int(k) < 0 else int(k)
                if not 0 <= i < size:
                    raise IndexError(f"index {int(k)} is out of bounds for an axis of size {size}")
                picks.append([i])
            elif isinstance(k, slice):
                picks.append(list(range(*k.indices(size))))
            else:  # advanced indexing (never napari's slicing): assemble the dense array first
                return np.asarray(self)[key]
        if all(isinstance(k, int | np.integer) for k in lead):
            return self._plane_at(tuple(p[0] for p in picks))[tail]
        tail_shape = self._zeros[tail].shape
        out = np.empty((*(len(p) for p in picks), *tail_shape), self.dtype)
        for position in itertools.product(*(range(len(p)) for p in picks)):
            out[position] = self._plane_at(tuple(p[i] for p, i in zip(picks, position, strict=True)))[tail]
        return out[tuple(0 if isinstance(k, int | np.integer) else slice(None) for k in lead)]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        dense = self[...]
        return dense if dtype is None else dense.astype(dtype, copy=False)


class LayerBudget:
    """At most ``limit`` distinct layers (napari) or hyperstacks (Fiji); thread-safe.

    Every layer costs the GUI thread on each redraw and keeps its arrays, so a stream of frames with ever
    new plate names (300 tiny frames: 300 layers, the GUI busy for a minute) must be refused, not obeyed.
    The data thread calls :meth:`admit` before queueing a frame (a refusal is the sender's error reply);
    the GUI thread calls :meth:`claim` when it creates the layer (so a frame admitted just before a
    ``clear`` is counted again) and :meth:`reset` on ``clear``.
    """

    def __init__(self, limit: int, what: str = "layers") -> None:
        if limit < 1:
            raise ValueError(f"a viewer needs room for at least 1 of its {what}, got a limit of {limit}")
        self.limit = limit
        self.what = what
        self._keys: set[Hashable] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)

    def claim(self, key: Hashable) -> bool:
        """Count ``key`` as a layer; False (nothing counted) when it is new and the limit is reached."""
        with self._lock:
            if key in self._keys:
                return True
            if len(self._keys) >= self.limit:
                return False
            self._keys.add(key)
            return True

    def admit(self, key: Hashable, name: str) -> None:
        """:meth:`claim`, or :class:`TooManyLayersError` naming the limit and the way out."""
        if not self.claim(key):
            raise TooManyLayersError(
                f"the viewer holds {self.limit} {self.what}, its limit (--max-layers): a frame for a new one "
                f"({name!r}) is refused; run `openhcs-rules viewer clear` (or send `clear`) to free them"
            )

    def reset(self) -> None:
        with self._lock:
            self._keys.clear()
