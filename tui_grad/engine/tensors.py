"""LayerTensors: one layer's parameters by name, as views into the engine's flat vector."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class LayerTensors(Mapping):
    """One layer's tensors by name (``weight``, ``bias``, ...), read-write.

    Each value is a view into the model's flat parameter vector: writing into it
    (``layer["weight"][:] = 0``) or assigning a whole tensor (``layer["weight"] = array``)
    changes the model. Assignment checks the shape and casts to the model's dtype; NaN and
    inf are taken as they are, like any other value (the next step reports what they do).
    """

    def __init__(self, layer: int, views: dict[str, np.ndarray]) -> None:
        self._layer = layer
        self._views = views

    def __getitem__(self, name: str) -> np.ndarray:
        return self._views[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __repr__(self) -> str:
        return f"LayerTensors({self._views!r})"

    def __setitem__(self, name: str, value: object) -> None:
        """Copy ``value`` into the tensor ``name``, or raise KeyError/ValueError saying why not."""
        where = f"params[{self._layer}][{name!r}]"
        if name not in self._views:
            raise KeyError(f"params[{self._layer}] has no tensor {name!r}; it has "
                           f"{', '.join(self._views)}")
        target = self._views[name]
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{where} takes real numbers (got dtype {array.dtype})")
        if array.shape != target.shape:
            raise ValueError(f"{where} must be shaped {target.shape} (got {array.shape})")
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range is inf: data
            target[...] = array

    def __delitem__(self, name: str) -> None:
        raise TypeError("a layer's tensors are fixed by the network; assign new values instead")
