"""A network stage as inference runs it: on the CPU, traced and optimised for inference once per input shape.

``torch.jit.trace`` records one forward pass of the hourglass at the stage's input shape, ``torch.jit.freeze`` folds
its weights in as constants (BatchNorm after a convolution is folded into it) and ``torch.jit.optimize_for_inference``
fuses activations into convolutions and keeps the activations in oneDNN's blocked layout between them. On this
machine's CPU that takes about 30 % off each forward pass of a landmark stage and about a fifth off a whole reading
(``tests/bench/bench_traced.py``); preparing one stage takes about a second. Outputs agree with the network as
built to about 1e-5 (float rounding): every traced stage is checked against it on a fixed input before it is used,
and one that disagrees, or fails to trace, is not used.

Preparing is worth it where many radiographs are read by one process (the node's sandbox, ``knee-train evaluate``),
not for a single image; it is off unless asked for. On CUDA the network as built runs.

PyTorch 2.13 marks these TorchScript calls deprecated in favour of ``torch.compile``; on this CPU ``torch.compile``
took 76 s to compile the pre-op landmark stage (it needs a C++ compiler at run time) and saved 19 % per pass against
TorchScript's 29 % (stop 48). Their warnings are silenced here; if a later PyTorch drops them, tracing fails, the
warning says so once per stage, and the network as built runs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections import OrderedDict

import torch
from torch import nn

from model.network import HourglassConfig, LandmarkNet, NetOutput

log = logging.getLogger(__name__)

# A traced stage is used only when it agrees with the network as built to this much (heatmap logits, auxiliary
# logits; the largest difference seen is about 2e-5)
AGREEMENT_TOLERANCE = 1e-3
# Prepared stages (and failures to prepare) kept per process, least recently used dropped first: a process that loads
# the same weights again (tests, a sandbox's successive aligners) prepares them once; the node loads one set of 4
CACHE_SIZE = 8

_cache: OrderedDict[tuple, torch.jit.ScriptModule | None] = OrderedDict()
_cache_lock = threading.Lock()


class _Outputs(nn.Module):
    """The network's outputs as a tuple of tensors (what tracing records): heatmaps, coordinates[, auxiliary]."""

    def __init__(self, net: LandmarkNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(x)
        return (out.heatmaps, out.coords) + ((out.aux,) if out.aux is not None else ())


def fingerprint(net: nn.Module) -> str:
    """A digest of ``net``'s configuration and every parameter and buffer (what a prepared stage depends on)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr(getattr(net, "cfg", None)).encode())
    for name, tensor in net.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _example(shape: tuple[int, ...]) -> torch.Tensor:
    """A fixed input of ``shape``: what the traced stage is checked on."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 0.5


def _trace(net: LandmarkNet, shape: tuple[int, ...]) -> torch.jit.ScriptModule | None:
    """``net`` traced, frozen and optimised at ``shape``, or None when that fails or its outputs disagree."""
    wrapper = _Outputs(net).eval()
    example = _example(shape)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
            traced = torch.jit.optimize_for_inference(
                torch.jit.freeze(torch.jit.trace(wrapper, example, check_trace=False)))
            mine, theirs = traced(example), wrapper(example)
    except Exception as exc:  # noqa: BLE001 - any failure to trace leaves the network as built in use
        log.warning("a %s stage runs untraced: tracing failed (%s)", type(net).__name__, exc)
        return None
    worst = max(float((a - b).abs().max()) for a, b in zip(mine, theirs))
    if len(mine) != len(theirs) or worst > AGREEMENT_TOLERANCE:
        log.warning("a traced stage disagrees with the network by %.2g: it runs untraced", worst)
        return None
    return traced


class StageNet:
    """One stage's network for inference: called like the network (``NetOutput``), traced per input shape when
    ``traced`` and on the CPU, the network as built otherwise (and for any shape whose tracing failed). A reading's
    stages see fixed shapes (the letterbox and the frames have fixed sizes, whatever the radiograph's), so no image
    can make a stage trace again."""

    def __init__(self, net: LandmarkNet, traced: bool = False):
        self.net = net.eval()
        self.traced = traced and next(net.parameters()).device.type == "cpu"  # on CUDA the network as built
        self._traced: dict[tuple[int, ...], torch.jit.ScriptModule | None] = {}
        self._fingerprint: str | None = None

    @property
    def cfg(self) -> HourglassConfig:
        return self.net.cfg

    def prepare(self, shape: tuple[int, ...]) -> bool:
        """Trace the stage for inputs of ``shape`` now (or take it from the process's cache); True when the traced
        stage will be used for them."""
        if not self.traced:
            return False
        shape = tuple(int(s) for s in shape)
        if shape not in self._traced:
            if self._fingerprint is None:
                self._fingerprint = fingerprint(self.net)
            key = (self._fingerprint, shape)
            with _cache_lock:
                if key in _cache:
                    _cache.move_to_end(key)
                else:
                    _cache[key] = _trace(self.net, shape)
                    while len(_cache) > CACHE_SIZE:
                        _cache.popitem(last=False)
                self._traced[shape] = _cache[key]
        return self._traced[shape] is not None

    def __call__(self, x: torch.Tensor) -> NetOutput:
        if not self.prepare(tuple(x.shape)):
            return self.net(x)
        heatmaps, coords, *aux = self._traced[tuple(x.shape)](x)
        return NetOutput(heatmaps, coords, aux[0] if aux else None)
