"""A model's parameters and gradients in one flat buffer each, for one-call optimizer steps.

An optimizer step is element-wise, so it gives the same result, bit for bit, over one flat
buffer holding every parameter as over each parameter in turn. The per-parameter loop
costs a Python call chain and a kernel launch per parameter (about 8 us each on the numba
backend, more with CuPy's launches), a large share of a step at small batch sizes.

:meth:`Sequential.build` therefore allocates the parameters of its layers as *views* of
one flat buffer, and their gradients as views of another (:meth:`ParameterPack.pack`):
``layer.weights`` is still an ``(n_inputs, n_neurons)`` array, nothing else changes. The
parameters are laid out grouped by regularization ``(l1, l2)``, which the optimizer folds
into its step, so an unregularized model steps in one call. The optimizer keeps its state
(Adam's moments) in flat buffers of the same layout (:class:`FlatState`) and leaves views
of them in ``layer.optimizer_state``, which is saved as before.

The pack is used only while the layers hold its views. Whoever puts another array in
place (the user assigning ``layer.weights``, a textbook script) keeps the per-parameter
step, which updates that array in place exactly as before: a pack never takes over an
array it did not allocate. A gradient a backend returned as a new array is copied in.
Copies of a model (``copy.deepcopy``, pickle) do not keep the view relation, so a copied
pack marks itself unusable and the copy steps per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Array = Any

__all__ = ["FlatState", "ParameterPack", "Run"]


@dataclass(frozen=True)
class Run:
    """A stretch ``[start, stop)`` of the flat buffers with one regularization."""

    start: int
    stop: int
    l1: float
    l2: float


@dataclass
class _Entry:
    """One parameter: its layer, its name, its views and where they lie in the buffers."""

    layer: Any
    name: str
    value: Array
    grad: Array
    offset: int
    size: int


class ParameterPack:
    """Flat parameter and gradient buffers behind the layers of one model.

    Attributes
    ----------
    layers : tuple of Layer
        The trainable layers, in order.
    param, grad : array, shape (size,)
        The flat buffers.
    """

    def __init__(self, layers: tuple[Any, ...], param: Array, grad: Array) -> None:
        self.layers = layers
        self.param = param
        self.grad = grad
        self.entries: list[_Entry] = []
        self.usable = True
        self._runs_cache: tuple[tuple[Any, ...], list[Run]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # A copy's layers hold copies of the views, no longer tied to the copied buffers.
        state = dict(self.__dict__)
        state["usable"] = False
        state["_runs_cache"] = None
        return state

    @classmethod
    def pack(cls, layers: list[Any]) -> ParameterPack | None:
        """Move the trainable parameters of freshly built ``layers`` into flat buffers.

        Each layer's parameter attribute ``name`` is set to a view (the values are copied
        in). The gradient attribute ``"d" + name`` is left alone: it stays None until the
        first backward pass (so a step before it still fails with "no gradient"), and the
        first step copies it in and points it at the pack (later backward passes write
        there). Returns None, changing nothing, when there is nothing to pack or the
        parameters differ in backend, array type or dtype.
        """
        trainable = tuple(layer for layer in layers if layer.trainable)
        found = [
            (layer, name, value, float(l1), float(l2))
            for layer in trainable
            for name, value, _, l1, l2 in layer.parameters()
        ]
        if not found:
            return None
        backend, first = found[0][0].backend, found[0][2]
        if any(
            layer.backend is not backend
            or getattr(layer, name, None) is not value
            or type(value) is not type(first)
            or value.dtype != first.dtype
            for layer, name, value, _, _ in found
        ):
            return None
        total = sum(int(item[2].size) for item in found)
        pack = cls(
            trainable,
            backend.empty((total,), first.dtype),
            backend.empty((total,), first.dtype),
        )
        # Laid out grouped by regularization (groups in order of first appearance), so that
        # each group is one contiguous run; entries stay in layer order, as parameters()
        # lists them, for runs() to check against.
        first: dict[tuple[float, float], int] = {}
        for index, item in enumerate(found):
            first.setdefault((item[3], item[4]), index)
        order = sorted(range(len(found)), key=lambda i: (first[found[i][3], found[i][4]], i))
        entries: list[_Entry | None] = [None] * len(found)
        offset = 0
        for index in order:
            layer, name, value, _, _ = found[index]
            size, shape = int(value.size), tuple(value.shape)
            new_value = pack.param[offset : offset + size].reshape(shape)
            new_grad = pack.grad[offset : offset + size].reshape(shape)
            backend.copy_into_inplace(new_value, value)
            setattr(layer, name, new_value)
            entries[index] = _Entry(layer, name, new_value, new_grad, offset, size)
            offset += size
        pack.entries = [entry for entry in entries if entry is not None]
        return pack

    def attach_gradients(self, layers: list[Any]) -> bool:
        """Point every layer's gradient attribute at the pack's gradient view (a planned step
        writes there from its first step on). False, changing nothing, when the layers no
        longer hold the pack's parameter views."""
        if not self.usable:
            return False
        trainable = [layer for layer in layers if layer.trainable]
        if tuple(trainable) != self.layers:
            return False
        if any(getattr(e.layer, e.name, None) is not e.value for e in self.entries):
            return False
        for entry in self.entries:
            setattr(entry.layer, "d" + entry.name, entry.grad)
        return True

    def runs(self, layers: list[Any]) -> list[Run] | None:
        """The runs to step over, or None when the layers no longer hold the pack's views.

        Also copies into the pack a gradient held as another array (the first step's, or
        one a backend returned as a new array), and points the layer at the pack's.
        """
        if not self.usable:
            return None
        entries = iter(self.entries)
        regularization = []
        layer_count = 0
        for layer in layers:
            if not layer.trainable:
                continue
            if layer_count >= len(self.layers) or layer is not self.layers[layer_count]:
                return None
            layer_count += 1
            for name, value, grad, l1, l2 in layer.parameters():
                entry = next(entries, None)
                if entry is None or entry.name != name or value is not entry.value:
                    return None
                if grad is not entry.grad:
                    if grad is None or tuple(grad.shape) != tuple(entry.grad.shape):
                        return None
                    layer.backend.copy_into_inplace(entry.grad, grad)
                    setattr(layer, "d" + name, entry.grad)
                regularization.append((l1, l2))
        if layer_count != len(self.layers) or next(entries, None) is not None:
            return None
        key = tuple(regularization)
        if self._runs_cache is None or self._runs_cache[0] != key:
            self._runs_cache = (key, self._merge_runs(regularization))
        return self._runs_cache[1]

    def _merge_runs(self, regularization: list[tuple[float, float]]) -> list[Run]:
        """Contiguous stretches of equal regularization, in buffer order."""
        spans = sorted(
            (e.offset, e.offset + e.size, float(l1), float(l2))
            for e, (l1, l2) in zip(self.entries, regularization, strict=True)
        )
        runs: list[Run] = []
        for start, stop, l1, l2 in spans:
            if runs and runs[-1].stop == start and (runs[-1].l1, runs[-1].l2) == (l1, l2):
                runs[-1] = Run(runs[-1].start, stop, l1, l2)
            else:
                runs.append(Run(start, stop, l1, l2))
        return runs


class FlatState:
    """An optimizer's state (one flat buffer per slot) for the parameters of one pack.

    ``layer.optimizer_state[name][slot]`` are views of the buffers. :meth:`sync` puts them
    back when something replaced them (a restored snapshot, a loaded file), copying the
    values in; a slot that does not exist yet starts at zero, as it would per parameter.
    """

    def __init__(self, pack: ParameterPack, slots: tuple[str, ...]) -> None:
        backend = pack.layers[0].backend
        size = int(pack.param.shape[0])
        self.pack = pack
        self.flat = {slot: backend.zeros((size,), pack.param.dtype) for slot in slots}
        self.views = [
            {
                slot: flat[e.offset : e.offset + e.size].reshape(tuple(e.value.shape))
                for slot, flat in self.flat.items()
            }
            for e in pack.entries
        ]
        self._slices: dict[Run, dict[str, Array]] = {}

    def sync(self) -> None:
        """Make every ``layer.optimizer_state`` slot a view of the flat buffers."""
        for entry, views in zip(self.pack.entries, self.views, strict=True):
            state = entry.layer.optimizer_state.get(entry.name)
            if state is not None and all(state.get(s) is v for s, v in views.items()):
                continue
            backend = entry.layer.backend
            for slot, view in views.items():
                old = None if state is None else state.get(slot)
                if old is None:
                    backend.copy_into_inplace(view, backend.zeros_like(view))
                else:
                    backend.copy_into_inplace(view, old)
            entry.layer.optimizer_state[entry.name] = dict(views)

    def slices(self, run: Run) -> dict[str, Array]:
        """The state of one run, as flat views."""
        found = self._slices.get(run)
        if found is None:
            found = {slot: flat[run.start : run.stop] for slot, flat in self.flat.items()}
            self._slices[run] = found
        return found
