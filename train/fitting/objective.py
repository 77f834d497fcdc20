"""The training objective of one stage, and the validation error measured with the inference decoder."""

from __future__ import annotations

import functools

import numpy as np
import torch

from model.alignment import FIXED_LEVEL, MIN_LEVEL, NEAR_LEVEL
from model.network import LandmarkNet, NetOutput, decode_heatmaps
from model.scheme import load_scheme
from train.data.stages import Batch
from train.fitting.config import LossConfig
from train.losses import (
    adaptive_wing_loss,
    aux_bce_loss,
    axes_seen,
    axis_angle_errors,
    axis_angle_loss,
    gaussian_targets,
    js_heatmap_loss,
    kl_heatmap_loss,
    wing_loss,
)


@functools.lru_cache(maxsize=8)
def landmark_weights(phase: str | None, axis_weight: float) -> torch.Tensor | None:
    """Per-landmark loss weights of a landmark stage of ``phase`` (``LossConfig.axis_landmark_weight``):
    ``axis_weight`` on the scheme's aTFA landmarks, 1 elsewhere; None (every landmark alike) when that weight is 1
    or the stage has no scheme. Cached: the tensor is shared, never change it in place."""
    if phase is None or axis_weight == 1.0:
        return None
    scheme = load_scheme(phase)
    weights = torch.ones(scheme.n_points)
    weights[scheme.angle_landmarks] = axis_weight
    return weights


@functools.lru_cache(maxsize=8)
def angle_axes(phase: str | None) -> torch.Tensor | None:
    """(K, 4) landmark indices of every axis an aTFA of ``phase``'s scheme may be drawn through
    (``train.losses.axis_angle_loss``): the tibial axis from the near level to each far level, the femoral FTS axis
    from each far level to the near one and the FNTS axis from each far level to the notch (``model.alignment``'s
    levels); None for a stage without a scheme. Cached: never change it in place."""
    if phase is None:
        return None
    scheme = load_scheme(phase)
    near = {bone: scheme.shaft_pair(bone, NEAR_LEVEL) for bone in ("femur", "tibia")}
    notch = tuple(scheme.roles["femoral_notch"])
    rows = []
    for bone in ("femur", "tibia"):
        for level, med, lat in scheme.shaft_levels[bone]:
            if not MIN_LEVEL[bone] - 1e-9 <= level <= FIXED_LEVEL + 1e-9:
                continue
            if bone == "tibia":
                rows.append([*near["tibia"], med, lat])
            else:
                rows += [[med, lat, *near["femur"]], [med, lat, *notch]]
    return torch.tensor(rows, dtype=torch.long)


def stage_loss(out: NetOutput, batch: Batch, cfg: LossConfig, stride: int,
               landmark_weight: torch.Tensor | None = None,
               axes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Wing on the soft-argmax coordinates (pixels) + heatmap regularisers + the axes' directions + auxiliary BCE;
    returns the total and its parts for logging. ``landmark_weight`` (N,) scales each landmark's share
    (``landmark_weights``) on top of the batch's visibility weights; ``axes`` (``angle_axes``) are those the axis
    term (``LossConfig.axis_angle_weight``) measures."""
    weight = batch.weight
    if landmark_weight is not None:
        weight = weight * landmark_weight.to(weight.device, weight.dtype)[None, :]
    parts: dict[str, torch.Tensor] = {"wing": wing_loss(out.coords, batch.coords, cfg.wing_w, cfg.wing_eps, weight)}
    total = parts["wing"]
    if cfg.heatmap_kl_weight > 0:
        parts["kl"] = kl_heatmap_loss(out.heatmaps, batch.coords, stride, cfg.heatmap_sigma, weight)
        total = total + cfg.heatmap_kl_weight * parts["kl"]
    if cfg.heatmap_js_weight > 0:
        parts["js"] = js_heatmap_loss(out.heatmaps, batch.coords, stride, cfg.heatmap_sigma, weight)
        total = total + cfg.heatmap_js_weight * parts["js"]
    if cfg.adaptive_wing_weight > 0:
        target = gaussian_targets(batch.coords, tuple(out.heatmaps.shape[-2:]), stride, cfg.heatmap_sigma)
        target = target / target.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        parts["awing"] = adaptive_wing_loss(torch.sigmoid(out.heatmaps.float()), target)
        total = total + cfg.adaptive_wing_weight * parts["awing"]
    if cfg.axis_angle_weight > 0 and axes is not None:
        parts["axis"] = axis_angle_loss(out.coords, batch.coords, axes.to(out.coords.device), batch.weight)
        total = total + cfg.axis_angle_weight * parts["axis"]
    if out.aux is not None and batch.aux is not None and cfg.aux_weight > 0:
        parts["aux"] = aux_bce_loss(out.aux, batch.aux)
        total = total + cfg.aux_weight * parts["aux"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


@torch.no_grad()
def validation_errors(net: LandmarkNet, batches: list[Batch], device: torch.device,
                      reference: tuple[int, int], aux_names: tuple[str, ...] = (),
                      axes: torch.Tensor | None = None) -> dict[str, float]:
    """Mean point error over pre-built validation batches, with the inference decoder (local soft-argmax at the
    peak) in input pixels (``err_px``) and in percent of the reference length (distance between target points
    ``reference``, ``err_pct``), and with the training soft-argmax over the whole map (``err_pct_soft``).

    With auxiliary labels ``aux_names`` also the accuracy of each (``<name>_acc``, e.g. ``implant_acc``), that among
    the cases labelled 0 and 1 apart (``<name>_acc_0``, ``<name>_acc_1``: e.g. pre-op knees called pre-op, post-op
    called post-op; left out when the validation set has none of a label) and, when one is "right", of the side read
    from the order of the two reference points (``order_right_acc``). With ``axes`` (``angle_axes``) also the mean
    absolute angle in degrees between the predicted and true axes the aTFA may be drawn through, where visible, with
    the inference decoder (``axis_err_deg``). The network is put back in training mode."""
    net.eval()
    errors, rel, rel_soft, aux_hits, aux_labels, order_hits, axis_err = [], [], [], [], [], [], []
    for batch in batches:
        b = batch.to(device)
        out = net(b.images)
        # err_pct: the Taylor peak decoder; err_pct_soft: the integral soft-argmax (inference's default).
        coords, _ = decode_heatmaps(out.heatmaps, net.cfg.stem_stride, method="peak")
        w = b.weight
        ref = torch.linalg.norm(b.coords[:, reference[1]] - b.coords[:, reference[0]], dim=-1).clamp_min(1e-6)
        per_image = (torch.linalg.norm(coords - b.coords, dim=-1) * w).sum(1) / w.sum(1).clamp_min(1)
        per_image_soft = (torch.linalg.norm(out.coords - b.coords, dim=-1) * w).sum(1) / w.sum(1).clamp_min(1)
        errors.append(per_image.cpu().numpy())
        rel.append((100 * per_image / ref).cpu().numpy())
        rel_soft.append((100 * per_image_soft / ref).cpu().numpy())
        if axes is not None:
            seen = axes_seen(w, axes.to(w.device))
            axis_err.append(axis_angle_errors(coords, b.coords, axes.to(w.device)).abs()[seen].cpu().numpy())
        if out.aux is not None and b.aux is not None:
            aux_hits.append(((out.aux > 0) == (b.aux > 0.5)).float().cpu())
            aux_labels.append((b.aux > 0.5).cpu())
            if "right" in aux_names:  # the order of the points also tells the side: lateral at +x on a left knee
                right = b.aux[:, aux_names.index("right")] > 0.5
                order_hits.append(((coords[:, 1, 0] < coords[:, 0, 0]) == right).float().cpu())
    net.train()
    result = {"err_px": float(np.concatenate(errors).mean()), "err_pct": float(np.concatenate(rel).mean()),
              "err_pct_soft": float(np.concatenate(rel_soft).mean())}
    if axis_err and np.concatenate(axis_err).size:
        result["axis_err_deg"] = float(np.concatenate(axis_err).mean())
    if aux_hits:
        hits = torch.cat(aux_hits)
        labels = torch.cat(aux_labels)
        for k, name in enumerate(aux_names):
            result[f"{name}_acc"] = float(hits[:, k].mean())
            for value in (0, 1):
                among = hits[labels[:, k] == bool(value), k]
                if len(among):
                    result[f"{name}_acc_{value}"] = float(among.mean())
    if order_hits:
        result["order_right_acc"] = float(torch.cat(order_hits).mean())
    return result

