"""Two-stage inference: the stable API the node and the training module call.

    aligner = KneeAligner.load()          # shipped weights, CPU or CUDA
    prediction = aligner.predict(ds)      # pydicom dataset -> KneePrediction

1. Global stage: the whole radiograph, letterboxed to a square, as acquired; it gives the two reference points
   (medial and lateral tibial plateau corners), the probability that the image shows a right knee, and the
   probability of an implant (post-op).
2. Laterality: the image's answer is the order of the two anatomical reference points (a right knee as acquired
   has its lateral plateau corner on the image's left), which the global network learns quickly and reliably;
   its auxiliary right-knee logit is a second opinion. The DICOM tag is used when present unless both the point
   order and the logit (with high certainty) contradict it; the image alone decides when the tag is missing.
   Right knees are mirrored to look like left knees from here on.
3. Local stage: the similarity frame fixed by the reference points is resampled and the phase's network
   (134 pre-op or 181 post-op landmarks) runs on it; optionally once more on the frame rebuilt from its own
   reference points (refinement). Points are mapped back to the source image (and un-mirrored).
4. Alignment: aTFA by FTS and FNTS; a whole-result confidence; below the threshold the result is low-confidence.
   Besides the heatmaps, the confidence asks the image itself whether the shaft levels that fix the axes were
   exposed (``model.exposure``): a level under the collimator is extrapolated and makes the result low-confidence.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pydicom
import torch

from model.alignment import compute_alignment
from model.exposure import unexposed_levels
from model.frames import apply_affine, frame_matrix, invert_affine, mirror_points
from model.network import decode_heatmaps
from model.preprocess import UnsupportedImage, letterbox, load_radiograph, to_network_input, warp_to_frame
from model.result import KneePrediction
from model.scheme import load_scheme
from model.weights import ModelBundle, load_bundle

# The image must contradict the tag with at least this probability before the tag is overruled.
TAG_OVERRULE_PROBABILITY = 0.95
# Reference points closer than this fraction of the image's longer side mean no knee was found.
MIN_REFERENCE_FRACTION = 0.02


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


class KneeAligner:
    """Landmarks, laterality, phase and aTFA for AP knee radiographs."""

    def __init__(self, bundle: ModelBundle, device: str = "auto", confidence_threshold: float | None = None,
                 refine: bool = True):
        self.bundle = bundle
        self.device = resolve_device(device)
        self.refine = refine
        self.confidence_threshold = (bundle.confidence_threshold if confidence_threshold is None
                                     else float(confidence_threshold))
        self.nets = {k: v.to(self.device).eval() for k, v in bundle.build_networks().items()}
        self.schemes = {p: load_scheme(p) for p in ("preop", "postop")}

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "auto",
             confidence_threshold: float | None = None, refine: bool = True) -> "KneeAligner":
        return cls(load_bundle(weights), device, confidence_threshold, refine)

    def _run(self, stage: str, image: np.ndarray):
        x = torch.from_numpy(to_network_input(image))[None, None].to(self.device)
        with torch.inference_mode():
            out = self.nets[stage](x)
        coords, conf = decode_heatmaps(out.heatmaps, self.nets[stage].cfg.stem_stride)
        aux = torch.sigmoid(out.aux[0]).cpu().numpy() if out.aux is not None else None
        return coords[0].cpu().numpy().astype(np.float64), conf[0].cpu().numpy().astype(np.float64), aux

    def _local(self, image_left: np.ndarray, reference: np.ndarray, phase: str):
        matrix = frame_matrix(reference, self.bundle.frame_spec)
        frame = warp_to_frame(image_left, matrix, self.bundle.frame_spec)
        pts, conf, _ = self._run(f"local_{phase}", frame)
        return apply_affine(invert_affine(matrix), pts), conf

    def predict(self, ds: pydicom.Dataset) -> KneePrediction:
        t0 = time.perf_counter()
        radiograph = load_radiograph(ds)
        decode_ms = (time.perf_counter() - t0) * 1000
        pred = self.predict_image(radiograph.image, radiograph.laterality_tag, radiograph.pixel_spacing_mm)
        pred.pixel_spacing_source = radiograph.pixel_spacing_source if radiograph.pixel_spacing_mm else None
        pred.timings_ms = {"decode": decode_ms, **pred.timings_ms}
        pred.timings_ms["total"] += decode_ms
        return pred

    def predict_image(self, image: np.ndarray, laterality_tag: str | None = None,
                      pixel_spacing_mm: tuple[float, float] | None = None) -> KneePrediction:
        """Predict on a normalised float image in [0, 1] (bone bright), as acquired."""
        timings: dict[str, float] = {}
        warnings: list[str] = []
        t = time.perf_counter()
        h, w = image.shape
        square, to_square = letterbox(image, self.bundle.global_size)
        ref_sq, ref_conf, aux = self._run("global", square)
        reference = apply_affine(invert_affine(to_square), ref_sq)
        if np.linalg.norm(reference[1] - reference[0]) < MIN_REFERENCE_FRACTION * max(h, w):
            raise UnsupportedImage("no knee found: the tibial plateau corners could not be told apart")
        p_right, p_implant = float(aux[0]), float(aux[1])
        timings["global"] = (time.perf_counter() - t) * 1000
        order_right = bool(reference[1, 0] < reference[0, 0])  # lateral corner left of the medial one

        laterality, source = self._decide_laterality(laterality_tag, order_right, p_right, warnings)
        phase = "postop" if p_implant >= 0.5 else "preop"
        scheme = self.schemes[phase]
        image_left = np.ascontiguousarray(image[:, ::-1]) if laterality == "R" else image
        ref_left = mirror_points(reference, w) if laterality == "R" else reference

        t = time.perf_counter()
        points, conf = self._local(image_left, ref_left, phase)
        timings["local"] = (time.perf_counter() - t) * 1000
        first_ref = points[list(scheme.roles["reference"])]
        collapsed = np.linalg.norm(first_ref[1] - first_ref[0]) < MIN_REFERENCE_FRACTION * max(h, w)
        if collapsed:
            warnings.append("local stage put the plateau corners together: no refinement, result unreliable")
        if self.refine and not collapsed:
            t = time.perf_counter()
            points, conf = self._local(image_left, first_ref, phase)
            timings["refine"] = (time.perf_counter() - t) * 1000
        final_ref = points[list(scheme.roles["reference"])]
        length = float(np.linalg.norm(final_ref[1] - final_ref[0]))
        shift = float(np.max(np.linalg.norm(final_ref - ref_left, axis=1))) / max(length, 1e-6)

        landmarks = mirror_points(points, w) if laterality == "R" else points
        alignment = compute_alignment(landmarks, scheme, laterality, pixel_spacing_mm)
        confidence = self._confidence(image, landmarks, conf, scheme, shift, alignment, length,
                                      pixel_spacing_mm, float(ref_conf.min()), warnings)
        timings["total"] = sum(timings.values())
        return KneePrediction(
            landmarks=landmarks, landmark_confidence=conf, scheme_id=scheme.id, phase=phase,
            phase_probability=p_implant, laterality=laterality, laterality_source=source,
            alignment=alignment, confidence=confidence, confidence_threshold=self.confidence_threshold,
            pixel_spacing_mm=pixel_spacing_mm, reference_length_px=length,
            model_name=self.bundle.name, model_version=self.bundle.version,
            timings_ms=timings, warnings=warnings, model_sha256=self.bundle.sha256,
        )

    @staticmethod
    def _decide_laterality(tag: str | None, order_right: bool, p_right: float,
                           warnings: list[str]) -> tuple[str, str]:
        """``(laterality, source)`` from the tag, the reference points' order and the right-knee probability."""
        from_image = "R" if order_right else "L"
        if tag is None:
            return from_image, "image"
        logit_agrees = (p_right if from_image == "R" else 1 - p_right) >= TAG_OVERRULE_PROBABILITY
        if from_image != tag and logit_agrees:
            warnings.append(f"laterality tag {tag} contradicted by the image; using {from_image}")
            return from_image, "image-over-tag"
        if from_image != tag:
            warnings.append(f"laterality tag {tag} and the image disagree; keeping the tag")
        return tag, "tag"

    @staticmethod
    def _confidence(image, landmarks, conf, scheme, shift, alignment, length, spacing, global_conf,
                    warnings) -> float:
        """Whole-result confidence in [0, 1]: the product of independent checks, each in [0, 1]."""
        roles = scheme.axis_indices
        c_points = float(np.mean(conf[roles]))
        # The refined reference points should agree with the ones the frame was built from.
        c_consistency = float(np.clip(1.0 - shift / 0.15, 0.0, 1.0))
        h, w = image.shape
        role_pts = landmarks[roles]
        inside = (role_pts[:, 0] >= 0) & (role_pts[:, 0] <= w - 1) & (role_pts[:, 1] >= 0) & (role_pts[:, 1] <= h - 1)
        c_inside = 1.0 if inside.all() else 0.0
        if not inside.all():
            warnings.append("landmarks that define the axes fall outside the image (shaft cut short?)")
        # Shaft levels under the collimator are extrapolated by the network: their cortices must show.
        unexposed = unexposed_levels(image, landmarks, scheme.roles, length) if inside.all() else []
        c_exposed = 0.0 if unexposed else 1.0
        if unexposed:
            levels = ", ".join(name.replace("_", " ") for name in unexposed)
            warnings.append(f"no bone edges at {levels} level (collimated or cut short?)")
        c_plausible = 1.0
        if max(abs(alignment.atfa_fts_deg), abs(alignment.atfa_fnts_deg)) > 35:
            c_plausible = 0.0
            warnings.append("implausible angle (> 35 degrees)")
        if spacing is not None:
            plateau_mm = length * float(np.sqrt(spacing[0] * spacing[1]))
            if not 40.0 <= plateau_mm <= 120.0:
                c_plausible = 0.0
                warnings.append(f"implausible tibial plateau width {plateau_mm:.0f} mm")
        checks = c_points * c_consistency * c_inside * c_exposed * c_plausible
        return float(np.clip(checks, 0.0, 1.0)) * min(1.0, 2 * global_conf)
