"""Hourglass landmark network with attention gates on the skip branches (Hu et al. 2025; Newell et al. 2016;
attention gates after Oktay et al. 2018), heatmap outputs and sub-pixel decoding.

The network maps a one-channel image (B, 1, H, W) to one heatmap per landmark at 1/``stem_stride`` of the input
resolution. Every level of the hourglass has the same width (the paper's design) unless ``max_width`` is set: then
each level below the top is twice as wide as its parent, up to that cap. ``forward`` also returns differentiable
coordinates (a soft-argmax over each whole map, used for the Wing loss in training) and optional auxiliary logits
(global stage: right knee as acquired, implant present).
``decode_heatmaps`` is the inference decoder: the soft-argmax the network was trained with (or, optionally, the peak
refined to sub-pixel accuracy), plus a per-landmark confidence (the probability mass around the peak);
``decode_two_modes`` finds the two points of a pair of maps that each peak at both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HourglassConfig:
    depth: int
    width: int
    n_points: int
    n_aux: int = 0
    stem_stride: int = 4  # heatmap resolution = input / stem_stride (1, 2 or 4)
    attention: bool = True
    in_channels: int = 1
    # None: every level of the hourglass has ``width`` channels (the paper's); otherwise each level below the top
    # doubles its parent's width up to ``max_width`` (the coarse levels are cheap, so capacity costs little time)
    max_width: int | None = None

    def __post_init__(self) -> None:
        if self.stem_stride not in (1, 2, 4):
            raise ValueError(f"stem_stride must be 1, 2 or 4, got {self.stem_stride}")
        if self.depth < 1 or self.width < 8 or self.n_points < 1:
            raise ValueError(f"invalid hourglass config {self}")
        if self.max_width is not None and self.max_width < self.width:
            raise ValueError(f"max_width {self.max_width} is below width {self.width}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "HourglassConfig":
        return cls(**data)


# The paper's configurations, and the narrower ones the shipped CPU-trained weights use.
PAPER_GLOBAL = HourglassConfig(depth=4, width=32, n_points=2, n_aux=2)
PAPER_LOCAL_PREOP = HourglassConfig(depth=6, width=256, n_points=134)
PAPER_LOCAL_POSTOP = HourglassConfig(depth=6, width=256, n_points=181)
CPU_GLOBAL = HourglassConfig(depth=4, width=32, n_points=2, n_aux=2)
CPU_LOCAL_PREOP = HourglassConfig(depth=5, width=64, n_points=134)
CPU_LOCAL_POSTOP = HourglassConfig(depth=5, width=64, n_points=181)


class Residual(nn.Module):
    """Pre-activation bottleneck residual block."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = max(cout // 2, 4)
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.skip(x)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al.): the coarser level's output decides which skip features pass."""

    def __init__(self, channels: int):
        super().__init__()
        inter = max(channels // 2, 4)
        self.theta = nn.Conv2d(channels, inter, 2, stride=2, bias=False)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)
        self.out = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        theta = self.theta(x)
        phi = F.interpolate(self.phi(gate), size=theta.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        alpha = F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.out(alpha * x)


class Hourglass(nn.Module):
    """One hourglass level; recursion builds the lower levels (twice as wide, up to ``max_width``, when given)."""

    def __init__(self, depth: int, width: int, attention: bool, max_width: int | None = None):
        super().__init__()
        inner = min(2 * width, max_width) if max_width else width
        self.skip = Residual(width, width)
        self.down = Residual(width, inner)
        self.inner = Hourglass(depth - 1, inner, attention, max_width) if depth > 1 else Residual(inner, inner)
        self.up = Residual(inner, width)
        self.gate = AttentionGate(width) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.skip(x)
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2, ceil_mode=True))))
        low = F.interpolate(low, size=x.shape[-2:], mode="nearest")
        if self.gate is not None:
            skip = self.gate(skip, low)
        return skip + low


@dataclass
class NetOutput:
    heatmaps: torch.Tensor  # (B, N, h, w) logits
    coords: torch.Tensor  # (B, N, 2) [x, y] in input pixels, soft-argmax over the whole map
    aux: torch.Tensor | None  # (B, n_aux) logits


class LandmarkNet(nn.Module):
    """Stem to 1/stem_stride resolution, one hourglass, a heatmap head and an optional auxiliary head."""

    def __init__(self, cfg: HourglassConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        stem: list[nn.Module] = [
            nn.Conv2d(cfg.in_channels, w // 2, 7, stride=2 if cfg.stem_stride >= 2 else 1, padding=3, bias=False),
            nn.BatchNorm2d(w // 2), nn.ReLU(inplace=True), Residual(w // 2, w),
        ]
        if cfg.stem_stride == 4:
            stem.append(nn.MaxPool2d(2))
        stem.append(Residual(w, w))
        self.stem = nn.Sequential(*stem)
        self.hourglass = Hourglass(cfg.depth, w, cfg.attention, cfg.max_width)
        self.head = nn.Sequential(Residual(w, w), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.Conv2d(w, w, 1),
                                  nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.Conv2d(w, cfg.n_points, 1))
        self.aux_head = nn.Linear(w, cfg.n_aux) if cfg.n_aux else None

    def forward(self, x: torch.Tensor) -> NetOutput:
        feats = self.hourglass(self.stem(x))
        heatmaps = self.head(feats)
        aux = self.aux_head(feats.mean(dim=(2, 3))) if self.aux_head is not None else None
        return NetOutput(heatmaps, soft_argmax(heatmaps, self.cfg.stem_stride), aux)


def _to_input_px(grid_xy: torch.Tensor, stride: int) -> torch.Tensor:
    """Heatmap cell coordinates to input pixel coordinates (pixel centres at integers)."""
    return (grid_xy + 0.5) * stride - 0.5


def soft_argmax(heatmaps: torch.Tensor, stride: int) -> torch.Tensor:
    """Differentiable expectation of the spatial softmax of each map, in input pixels."""
    b, n, h, w = heatmaps.shape
    prob = torch.softmax(heatmaps.reshape(b, n, h * w).float(), dim=-1).reshape(b, n, h, w)
    xs = torch.arange(w, device=heatmaps.device, dtype=prob.dtype)
    ys = torch.arange(h, device=heatmaps.device, dtype=prob.dtype)
    x = (prob.sum(2) * xs).sum(-1)
    y = (prob.sum(3) * ys).sum(-1)
    return _to_input_px(torch.stack([x, y], dim=-1), stride)


@torch.no_grad()
def decode_heatmaps(heatmaps: torch.Tensor, stride: int, radius: int = 2,
                    method: str = "integral") -> tuple[torch.Tensor, torch.Tensor]:
    """Landmark positions and confidences: ``(coords (B, N, 2) input px, confidence (B, N))``.

    ``method="integral"`` (default) is the soft-argmax over the whole map, the very quantity the Wing loss trains,
    so the trained networks are most accurate with it (measured on validation frames: 0.55 % vs 0.68 % of the
    reference length for the pre-op local stage). ``method="peak"`` refines the peak cell by a second-order Taylor
    expansion of the log-probability (exact for a Gaussian-shaped map, as in DARK, Zhang et al. 2020), falling back
    to a soft-argmax in the (2 radius + 1)^2 window where the surface is not a maximum; it is not pulled toward the
    map centre when a map is flat. Either way the confidence is the softmax probability mass in that window around
    the peak: near 1 for a sharp single peak, small for a flat or multi-modal map.
    """
    if method not in ("integral", "peak"):
        raise ValueError(f"method must be 'integral' or 'peak', got {method!r}")
    b, n, h, w = heatmaps.shape
    logp = torch.log_softmax(heatmaps.reshape(b, n, h * w).float(), dim=-1)
    prob = logp.exp()
    peak = prob.argmax(dim=-1)
    py, px = peak // w, peak % w
    offs = torch.arange(-radius, radius + 1, device=heatmaps.device)
    wy = (py[..., None, None] + offs[:, None]).expand(b, n, offs.numel(), offs.numel())
    wx = (px[..., None, None] + offs[None, :]).expand(b, n, offs.numel(), offs.numel())
    inside = ((wy >= 0) & (wy < h) & (wx >= 0) & (wx < w)).reshape(b, n, -1)
    idx = (wy.clamp(0, h - 1) * w + wx.clamp(0, w - 1)).reshape(b, n, -1)
    weights = torch.gather(prob, 2, idx) * inside
    mass = weights.sum(-1).clamp_min(1e-12)
    soft = torch.stack([(weights * wx.reshape(b, n, -1)).sum(-1) / mass,
                        (weights * wy.reshape(b, n, -1)).sum(-1) / mass], dim=-1)

    def at(dy: int, dx: int) -> torch.Tensor:
        return torch.gather(logp, 2, ((py + dy).clamp(0, h - 1) * w + (px + dx).clamp(0, w - 1))[..., None])[..., 0]

    c = at(0, 0)
    gx, gy = (at(0, 1) - at(0, -1)) / 2, (at(1, 0) - at(-1, 0)) / 2
    hxx, hyy = at(0, 1) - 2 * c + at(0, -1), at(1, 0) - 2 * c + at(-1, 0)
    hxy = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / 4
    det = hxx * hyy - hxy * hxy
    ok = (hxx < 0) & (det > 1e-9) & (px > 0) & (px < w - 1) & (py > 0) & (py < h - 1)
    safe = torch.where(ok, det, torch.ones_like(det))
    dx = -(hyy * gx - hxy * gy) / safe
    dy = -(hxx * gy - hxy * gx) / safe
    ok = ok & (dx.abs() <= 1) & (dy.abs() <= 1)
    taylor = torch.stack([px + dx, py + dy], dim=-1)
    grid = torch.where(ok[..., None], taylor, soft)
    if method == "integral":
        return soft_argmax(heatmaps, stride), mass
    return _to_input_px(grid, stride), mass


def decode_two_modes(heatmaps: torch.Tensor, stride: int, radius: int = 2, separation: int = 3,
                     min_mass: float = 0.2) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The two strongest separate modes of a pair of maps taken together, for a pair of points each map may mistake
    for the other (the plateau corners of a knee whose side the network cannot tell: each corner's map then peaks at
    both corners, and the peaks of both maps may fall on the same one).

    ``heatmaps``: (2, H, W) logits. Returns ``(modes (2, 2) input px, mass (2 maps, 2 modes))``, the modes ordered by
    strength, each the soft-argmax of the summed probability in the (2 ``radius`` + 1)^2 window around a local
    maximum at least ``separation`` cells from the other, and the probability each map puts in each window; None
    when the second mode holds less than ``min_mass`` of the summed probability (2 in all): a single point or a flat
    map, not two."""
    n, h, w = heatmaps.shape
    if n != 2:
        raise ValueError(f"expected a pair of maps, got {n}")
    prob = torch.softmax(heatmaps.reshape(2, h * w).float(), dim=-1).reshape(2, h, w)
    total = prob.sum(0)
    is_max = total == F.max_pool2d(total[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]
    order = torch.argsort(total.reshape(-1), descending=True)
    cells = [(int(i) // w, int(i) % w) for i in order[is_max.reshape(-1)[order]][:64]]
    first = cells[0]
    second = next((c for c in cells[1:] if max(abs(c[0] - first[0]), abs(c[1] - first[1])) >= separation), None)
    if second is None:
        return None
    modes, masses = [], []
    for y, x in (first, second):
        y0, y1, x0, x1 = max(y - radius, 0), min(y + radius + 1, h), max(x - radius, 0), min(x + radius + 1, w)
        window = total[y0:y1, x0:x1]
        grid = {"dtype": window.dtype, "device": window.device}  # the maps' device: CUDA when present
        ys, xs = torch.meshgrid(torch.arange(y0, y1, **grid), torch.arange(x0, x1, **grid), indexing="ij")
        mass = window.sum()
        modes.append(torch.stack([(window * xs).sum() / mass, (window * ys).sum() / mass]))
        masses.append(prob[:, y0:y1, x0:x1].sum((1, 2)))
    mass = torch.stack(masses, dim=1)  # (map, mode)
    if float(mass[:, 1].sum()) < min_mass:
        return None
    return _to_input_px(torch.stack(modes), stride), mass


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
