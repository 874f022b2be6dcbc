"""Measuring the memory a computation allocates, tensor by tensor, on any device (the attention lab's
peak-memory and KV-cache figures)."""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class MemoryTracker(TorchDispatchMode):
    """Peak bytes of the tensors allocated inside the ``with`` block (inputs not counted), and the
    largest single allocation. A storage is counted once, however many views share it, and is
    released when the last tensor using it is freed."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.largest = 0
        self._owned: dict[int, list[int]] = {}  # storage address -> [bytes, tensors using it]

    def _release(self, key: int) -> None:
        entry = self._owned.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                self.live -= entry[0]
                del self._owned[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage().data_ptr()
            if key in self._owned:  # a view (or in-place result) of a storage made in here
                self._owned[key][1] += 1
            elif key in inputs:  # a view of something made outside: not ours
                continue
            else:
                size = t.untyped_storage().nbytes()
                self._owned[key] = [size, 1]
                self.live += size
                self.peak = max(self.peak, self.live)
                self.largest = max(self.largest, size)
            weakref.finalize(t, self._release, key)
        return out
