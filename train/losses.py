"""Training losses: Wing loss on coordinates in pixels, Adaptive Wing on heatmaps, heatmap regularisers that keep
each map a single sharp peak (KL from a Gaussian target, or the Jensen-Shannon divergence of DSNT), a loss on the
direction of the bone axes the landmarks define (degrees), and BCE for the auxiliary logits.

Coordinates are ``[x, y]`` in pixels of the network input (the letterboxed image or the local frame), the same
units ``model.network.LandmarkNet`` returns; heatmap cells follow the network's convention (cell ``j`` is centred
at input pixel ``(j + 0.5) * stride - 0.5``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def wing(x: torch.Tensor, w: float = 10.0, eps: float = 2.0) -> torch.Tensor:
    """Element-wise Wing function of Feng et al. 2018: ``w ln(1 + |x|/eps)`` below ``w``, ``|x| - C`` above."""
    ax = x.abs()
    c = w - w * math.log1p(w / eps)
    return torch.where(ax < w, w * torch.log1p(ax / eps), ax - c)


def wing_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    w: float = 10.0,
    eps: float = 2.0,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean Wing loss over every coordinate of ``pred``/``target`` (B, N, 2), in pixels.

    ``weight`` (B, N) or (B,) masks or weights landmarks/samples (0 = ignore); the mean is over the weighted
    coordinates.
    """
    per = wing(pred - target, w, eps)  # (B, N, 2)
    if weight is None:
        return per.mean()
    wgt = weight.to(per.dtype)
    while wgt.dim() < per.dim():
        wgt = wgt.unsqueeze(-1)
    wgt = wgt.expand_as(per)
    return (per * wgt).sum() / wgt.sum().clamp_min(1e-12)


def adaptive_wing_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    omega: float = 14.0,
    theta: float = 0.5,
    eps: float = 1.0,
    alpha: float = 2.1,
) -> torch.Tensor:
    """Adaptive Wing loss of Wang et al. 2019 between heatmaps in [0, 1] (mean over every pixel).

    ``omega ln(1 + |(y - p) / eps|^(alpha - y))`` for ``|y - p| < theta``, else ``A |y - p| - C``, with ``A`` and
    ``C`` making the two pieces meet smoothly at ``theta``. ``pred`` is a probability map (e.g. the sigmoid of
    the network's logits), ``target`` the Gaussian target with peak 1.
    """
    d = (target - pred).abs()
    power = alpha - target
    ratio = theta / eps
    a = omega * (1 / (1 + ratio**power)) * power * ratio ** (power - 1) / eps
    c = theta * a - omega * torch.log1p(ratio**power)
    small = omega * torch.log1p((d / eps) ** power)
    large = a * d - c
    return torch.where(d < theta, small, large).mean()


def input_to_heatmap_px(coords: torch.Tensor, stride: int) -> torch.Tensor:
    """Input pixel coordinates to heatmap cell coordinates (inverse of the network's cell-centre convention)."""
    return (coords + 0.5) / stride - 0.5


def gaussian_targets(coords: torch.Tensor, shape: tuple[int, int], stride: int, sigma: float) -> torch.Tensor:
    """Normalised Gaussian maps (B, N, h, w), each summing to 1, centred at ``coords`` (B, N, 2) input pixels.

    ``sigma`` is in heatmap cells.
    """
    h, w = shape
    centre = input_to_heatmap_px(coords.float(), stride)
    xs = torch.arange(w, device=coords.device, dtype=torch.float32)
    ys = torch.arange(h, device=coords.device, dtype=torch.float32)
    gx = torch.exp(-0.5 * ((xs - centre[..., 0:1]) / sigma) ** 2)  # (B, N, w)
    gy = torch.exp(-0.5 * ((ys - centre[..., 1:2]) / sigma) ** 2)  # (B, N, h)
    g = gy[..., :, None] * gx[..., None, :]
    return g / g.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def _flat_maps(logits: torch.Tensor, coords: torch.Tensor, stride: int, sigma: float
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Log spatial softmax of each map and its Gaussian target, both flattened to (B, N, h * w)."""
    b, n, h, w = logits.shape
    logp = torch.log_softmax(logits.reshape(b, n, h * w).float(), dim=-1)
    return logp, gaussian_targets(coords, (h, w), stride, sigma).reshape(b, n, h * w)


def js_heatmap_loss(logits: torch.Tensor, coords: torch.Tensor, stride: int, sigma: float = 1.0,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
    """Jensen-Shannon divergence (nats) between each map's spatial softmax and a Gaussian at the target.

    The DSNT regulariser (Nibali et al. 2018): without it a whole-map soft-argmax can learn spread or
    multi-modal maps whose mean is right, which the local peak decoder used at inference then reads wrongly.
    Targets outside the map give a truncated Gaussian; ``weight`` (B, N) or (B,) masks landmarks/samples.
    """
    logp, q = _flat_maps(logits, coords, stride, sigma)
    logp = logp.clamp_min(-100.0)  # keeps 0 * log 0 finite
    p = logp.exp()
    m = 0.5 * (p + q)
    logm = torch.log(m.clamp_min(1e-12))
    kl_pm = (p * (logp - logm)).sum(-1)
    kl_qm = (q * (torch.log(q.clamp_min(1e-12)) - logm)).sum(-1)
    return _weighted_mean(0.5 * (kl_pm + kl_qm), weight)


def kl_heatmap_loss(logits: torch.Tensor, coords: torch.Tensor, stride: int, sigma: float = 1.0,
                    weight: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p) (nats) from a Gaussian target q at the landmark to each map's spatial softmax p.

    Its gradient on the logits is ``p - q``, so it sharpens a flat map from the first step, where the JS
    divergence's gradient vanishes (every ``p`` is tiny on a large flat map). ``weight`` as in ``js_heatmap_loss``.
    """
    logp, q = _flat_maps(logits, coords, stride, sigma)
    kl = (q * (torch.log(q.clamp_min(1e-12)) - logp)).sum(-1)  # (B, N)
    return _weighted_mean(kl, weight)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of (B, N) ``values`` weighted by (B, N) or (B,) ``weight``."""
    if weight is None:
        return values.mean()
    wgt = weight.to(values.dtype)
    if wgt.dim() == 1:
        wgt = wgt[:, None].expand_as(values)
    return (values * wgt).sum() / wgt.sum().clamp_min(1e-12)


def axis_angle_loss(pred: torch.Tensor, target: torch.Tensor, axes: torch.Tensor, weight: torch.Tensor | None = None,
                    beta_deg: float = 0.5) -> torch.Tensor:
    """Smooth-L1 (``beta_deg``) of the angle, in degrees, between each predicted axis and the true one.

    ``pred``/``target`` (B, N, 2) coordinates; ``axes`` (K, 4) landmark indices ``[a1, a2, b1, b2]``: an axis from
    the midpoint of a1 and a2 to that of b1 and b2 (a shaft level's two cortices, the notch's two points). A common
    shift of the points leaves it unchanged: it asks only that the axes point the right way, which an error spread
    over many landmarks (a whole shaft read tilted) costs far more in the angle than in the per-landmark loss.
    ``weight`` (B, N): an axis counts only where its four landmarks all have weight > 0 (visible)."""
    err = axis_angle_errors(pred, target, axes)
    per = F.smooth_l1_loss(err, torch.zeros_like(err), beta=beta_deg, reduction="none")  # (B, K)
    if weight is None:
        return per.mean()
    seen = axes_seen(weight, axes).to(per.dtype)
    return (per * seen).sum() / seen.sum().clamp_min(1.0)


def axis_angle_errors(pred: torch.Tensor, target: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """(B, K) signed angles in degrees from each true axis of ``axes`` (``axis_angle_loss``) to the predicted one."""
    def direction(points: torch.Tensor) -> torch.Tensor:
        a = (points[:, axes[:, 0]] + points[:, axes[:, 1]]) / 2
        b = (points[:, axes[:, 2]] + points[:, axes[:, 3]]) / 2
        return b - a  # (B, K, 2)

    p, t = direction(pred.float()), direction(target.float())
    cross = p[..., 0] * t[..., 1] - p[..., 1] * t[..., 0]
    return torch.rad2deg(torch.atan2(cross, (p * t).sum(-1)))


def axes_seen(weight: torch.Tensor, axes: torch.Tensor) -> torch.Tensor:
    """(B, K) bool: all four landmarks of each axis have weight > 0 (visible) in each image."""
    return (weight[:, axes] > 0).all(-1)


def aux_bce_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy on auxiliary logits (B, K) against 0/1 targets; ``mask`` 0 marks unknown labels."""
    per = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    if mask is None:
        return per.mean()
    m = mask.float()
    return (per * m).sum() / m.sum().clamp_min(1e-12)
