"""Two-stage inference: the stable API the node and the training module call.

    aligner = KneeAligner.load()          # shipped weights, CPU or CUDA
    prediction = aligner.predict(ds)      # pydicom dataset -> KneePrediction

1. Global stage: the whole radiograph, letterboxed to a square, as acquired; it gives the two reference points
   (medial and lateral tibial plateau corners), the probability that the image shows a right knee, and the
   probability of an implant (post-op). A bundle with an implant stage decides pre/post-op there instead: a small
   network on the joint alone, in a frame fixed by the reference points (the implant fills a known part of it),
   which carries over to images of another renderer far better than the global stage's whole-image logit.
2. Laterality: the image's answer is the order of the two anatomical reference points (a right knee as acquired
   has its lateral plateau corner on the image's left), which the global network learns quickly and reliably;
   its auxiliary right-knee logit gives the probability. The DICOM tag, when present, is always used: an image
   that contradicts it makes the result low-confidence with the reason, never a number measured on the other
   side. Without a tag the image decides, with its probability in the result. The pre/post-op decision (the
   implant logit) likewise: an uncertain one is low confidence. Right knees are mirrored to look like left knees
   from here on. Where the global stage cannot tell the two corners apart (both decoded on one point: each
   corner's map peaks at both corners), the maps' two modes are the corners, ordered by the tag; without a tag
   the right-knee classifier orders them and the result is low-confidence, so no side is ever guessed.
3. Local stage: the similarity frame fixed by the reference points is resampled and the phase's network
   (134 pre-op or 181 post-op landmarks) runs on it; optionally once more on the frame rebuilt from its own
   reference points (refinement). Points are mapped back to the source image (and un-mirrored). The other
   phase's network runs once on the first frame too: the post-op one must find the implant's outlines about as
   surely as the pre-op one finds the native knee exactly when the phase decided is post-op; otherwise the phase
   is uncertain (low confidence with the reason) and the landmark stages' phase is measured: that cue carries over
   to another renderer where the implant stage does not.
4. Alignment: aTFA by FTS and FNTS through the most distant shaft levels whose cortices the image shows
   (``model.exposure``, ``model.alignment.choose_bone_levels``); too little shaft exposed makes the result
   low-confidence, and so does a femoral notch too shallow to place FNTS's midpoint on
   (``model.alignment.MIN_NOTCH_DEPTH``; the panel's measurements drawn to it too). A whole-result confidence;
   below the threshold the result is low-confidence.
5. Consistency: the same measurement on a mirrored copy (laterality swapped) and on a copy rotated by a few
   degrees, at the same shaft levels, must agree within ``CONSISTENCY_TOLERANCE_DEG``; otherwise the result is
   low-confidence with the reason. A copy that finds no knee, or whose corners fell on one point with no tag to
   order them, confirms nothing: low confidence too.
6. The measurement panel (``model.measurements``): the configured measurements from the same landmarks and
   axes (a bone without enough exposed shaft makes only the measurements on its axis not measurable), each
   graded by the confidence of its own landmarks and of the landmark set as a whole (laterality, phase, the
   consistency copies), with the site's reference ranges attached.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import cv2
import numpy as np
import pydicom
import torch

from model.alignment import (MIN_NOTCH_DEPTH, ShaftLevels, choose_bone_levels, compute_alignment, notch_depth,
                             short_shaft_reason)
from model.exposure import exposed_levels
from model.frames import apply_affine, frame_matrix, invert_affine, mirror_points
from model.measurements import (ReferenceRange, apply_site_ranges, compute_measurements, distrust_through, grade,
                                resolve_names)
from model.network import decode_heatmaps, decode_two_modes
from model.preprocess import FrameSampler, UnsupportedImage, letterbox, load_radiograph, to_network_input
from model.result import KneePrediction
from model.scheme import load_scheme
from model.traced import StageNet
from model.vocabulary import GLOBAL_STAGE, IMPLANT_STAGE, PHASE_NAMES, PHASES, POSTOP, PREOP, STAGES, local_stage
from model.weights import ModelBundle, load_bundle

# Reference points closer than this fraction of the image's longer side mean no knee was found.
MIN_REFERENCE_FRACTION = 0.02


def on_one_point(points: np.ndarray, shape: tuple[int, ...]) -> bool:
    """Whether two reference points (plateau corners) lie closer than ``MIN_REFERENCE_FRACTION`` of an image of
    ``shape``'s longer side: one point, not two."""
    return bool(np.linalg.norm(points[1] - points[0]) < MIN_REFERENCE_FRACTION * max(shape))

# The warning of a result whose plateau corners the global stage read onto one point and no tag ordered.
CORNERS_NOT_TOLD_APART = "laterality uncertain: the plateau corners could not be told apart"
# Without a tag, the side is read from the order of the plateau corners; the right-knee classifier must not
# contradict it with this certainty. The pre/post-op decision (implant classifier) must be at least this certain.
LATERALITY_CERTAINTY = 0.9
PHASE_CERTAINTY = 0.9
# A side read from the image (no tag) also needs the fibula's landmarks at this mean heatmap confidence. Chosen on the
# validation seeds with kneealign-v2.2 (docs/results/v2.2-fibula-side.md): the 13 knees of xray3d:val read on the
# wrong side had 0.48-0.74, the confident knees read on the right side at least 0.84 (3D renderer) and 0.92 (2D
# generator); 0.75 and 0.8 flag the same knees there.
FIBULA_SIDE_CONFIDENCE = 0.8
# The pre/post-op decision must agree with the landmark stages: the post-op stage's mean heatmap confidence on the
# implant's outlines minus the pre-op stage's on its landmarks (both in the global stage's frame) at or above this
# says "an implant", below it "none"; where the two disagree the phase is uncertain and the landmark stages' phase is
# measured. Chosen on the 2D generator's validation seeds alone (python tests/bench/bench_phase_outline.py, 100 per
# phase; docs/results/phase-outline-check.md): pre-op knees at most -0.102, post-op at least -0.040 with
# kneealign-v2.2; at most -0.134 and at least -0.008 with the leave-one-renderer-out bundle trained on that generator
# alone. On the 3D renderer's validation seeds that bundle's implant stage reads the phase of 97 of 200 knees right,
# this cue 178; the two disagree on 87, where the cue is right on 84. The default: a bundle whose landmark stages
# read outlines with other confidences carries its own split (``ModelBundle.implant_outline_evidence``, chosen the same
# way; the run config's ``implant_outline_evidence``).
IMPLANT_OUTLINE_EVIDENCE = -0.07
# The mirrored and the rotated copy must measure within this of the original (FTS and FNTS, degrees).
CONSISTENCY_TOLERANCE_DEG = 1.5
CONSISTENCY_ROTATION_DEG = 7.0
# The final reference points may move this far (a fraction of the plateau width) from the global stage's before the
# confidence falls to 0 (linearly): the two stages disagree on where the knee is. On the 3D renderer's images the
# shipped weights' global stage is often 0.1-0.25 plateau widths off while the local stage settles on the right
# corners, and there the distance does not tell good results from bad; on a renderer the bundle never saw it does:
# the leave-one-renderer-out bundle measured more knees with it relaxed, but with more sign errors (python
# tests/bench/bench_reference_shift.py, docs/results/v2-on-xray3d-test.md). It stays. The result reports it
# (``reference_shift``: "global"), and how far the corners moved on refinement ("frame").
REFERENCE_SHIFT_LIMIT = 0.15
# How each stage's heatmaps become points (model.network.decode_heatmaps). The landmark stages use the soft-argmax
# they were trained with. The global stage reads the whole radiograph, where an unsure map has several modes and the
# soft-argmax lands between them: the two corners move together towards the joint's centre and the frame shrinks.
# Its peak (Taylor-refined) does not. Global stage alone (kneealign-v2.2), corners more than 10 % of the plateau width
# off, chosen on the validation seeds (python tests/bench/bench_global_decoder.py; 100 pre-op + 100 post-op per
# renderer): 3D renderer 23 + 23 with the soft-argmax, 14 + 11 with the peak; 2D generator none either way (the peak
# 0.3 % of the plateau width less precise there, which the landmark stages absorb). Confirmed on xray3d:test (200 +
# 200, --data test): 28 + 39 -> 16 + 16.
DECODER = {GLOBAL_STAGE: "peak"}
# An aTFA beyond this (degrees, either method) is implausible: confidence 0.
MAX_PLAUSIBLE_ATFA_DEG = 35.0
# FTS and FNTS are two readings of one angle: where they differ by more than this (degrees), one of them rests on a
# misplaced landmark (a post-op notch placed in the wrong part of the component, a side read wrongly): confidence 0.
# Chosen on the validation seeds with kneealign-v2.2 (knee-train evaluate --data xray3d:val / synthetic:val
# --n-per-phase 200, docs/results/v2.2-method-disagreement.md): the confident post-op knees read 23.3 deg and 10.5 deg
# off differ by 10.9 and 9.1 deg, every other confident knee by at most 6.8 deg but one (11.1 deg, read well: the 3D
# renderer's own FTS and FNTS differ by more than 8 deg on 6 % of its post-op knees); the 2D generator's confident
# knees at most 3.7 deg (its ground truth 4.1).
# Any value from 7 to 9 gives the same result there.
MAX_METHOD_DISAGREEMENT_DEG = 8.0
# A tibial plateau narrower or wider than this (mm, from the pixel spacing) is implausible: confidence 0.
PLATEAU_WIDTH_MM = (40.0, 120.0)
# The global stage's confidence counts fully from this value up.
GLOBAL_CONFIDENCE_FULL = 0.5
# The graded checks of the confidence (``KneeAligner._confidence``), as a low-confidence result names them when
# no check failed outright.
GRADED_CHECKS = ("weak heatmaps at the axis landmarks", "plateau corners far from the global stage's",
                 "global stage unsure of the plateau corners")
# A pre/post-op split at this implant probability.
IMPLANT_PROBABILITY_SPLIT = 0.5


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


class KneeAligner:
    """Landmarks, laterality, phase and aTFA for AP knee radiographs."""

    def __init__(self, bundle: ModelBundle, device: str = "auto", confidence_threshold: float | None = None,
                 refine: bool = True, consistency: bool = True, measurements: Iterable[str] | None = None,
                 reference_ranges: Mapping[str, ReferenceRange] | None = None, traced: bool = False):
        """``traced``: run each stage traced and optimised for the CPU (``model.traced``; about a second per stage
        to prepare, then about a fifth less time per radiograph): for a process that reads many radiographs."""
        self.bundle = bundle
        self.measurement_names = resolve_names(measurements)  # the panel (the aTFA always)
        self.reference_ranges = dict(reference_ranges or {})
        apply_site_ranges({}, self.reference_ranges)  # unknown names fail here, not on the first image
        self.device = resolve_device(device)
        self.refine = refine
        self.consistency = consistency
        self.confidence_threshold = (bundle.confidence_threshold if confidence_threshold is None
                                     else float(confidence_threshold))
        self.implant_outline_evidence = (IMPLANT_OUTLINE_EVIDENCE if bundle.implant_outline_evidence is None
                                         else bundle.implant_outline_evidence)
        self.nets = {k: StageNet(v.to(self.device), traced) for k, v in bundle.build_networks().items()}
        self.schemes = {p: load_scheme(p) for p in PHASE_NAMES}

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "auto",
             confidence_threshold: float | None = None, refine: bool = True,
             consistency: bool = True, measurements: Iterable[str] | None = None,
             reference_ranges: Mapping[str, ReferenceRange] | None = None, traced: bool = False) -> "KneeAligner":
        return cls(load_bundle(weights), device, confidence_threshold, refine, consistency, measurements,
                   reference_ranges, traced)

    def prepare(self) -> dict[str, bool]:
        """Trace every stage at the input shape it runs at now rather than on the first radiograph (a no-op unless
        ``traced``); returns, per stage, whether its traced network will be used."""
        g, frame, implant = self.bundle.global_size, self.bundle.frame_spec, self.bundle.implant_frame
        shapes = {GLOBAL_STAGE: (g, g), **({IMPLANT_STAGE: (implant.height_px, implant.width_px)} if implant else {})}
        return {stage: net.prepare((1, 1, *shapes.get(stage, (frame.height_px, frame.width_px))))
                for stage, net in self.nets.items()}

    def _run(self, stage: str, image: np.ndarray, method: str | None = None):
        """One stage on one image: points (in the image's pixels), their confidences, the auxiliary outputs;
        ``method``: the heatmap decoder (default: the one ``DECODER`` names for the stage)."""
        return self._decode(stage, self._forward(stage, image), method)

    def _decode(self, stage: str, out, method: str | None = None):
        """A stage's output as ``_run`` gives it."""
        coords, conf = decode_heatmaps(out.heatmaps, self.nets[stage].cfg.stem_stride,
                                       method=method or DECODER.get(stage, "integral"))
        aux = torch.sigmoid(out.aux[0]).cpu().numpy() if out.aux is not None else None
        return coords[0].cpu().numpy().astype(np.float64), conf[0].cpu().numpy().astype(np.float64), aux

    def _forward(self, stage: str, image: np.ndarray):
        x = torch.from_numpy(to_network_input(image))[None, None].to(self.device)
        with torch.inference_mode():
            return self.nets[stage](x)

    def global_pass(self, image: np.ndarray):
        """The global network on the whole radiograph, letterboxed to its square: ``(output, to_square)``, which
        ``plateau_corners``, ``plateau_corner_modes`` and ``corners_told_apart`` take as ``seen`` so that the network
        runs once per image."""
        square, to_square = letterbox(image, self.bundle.global_size)
        return self._forward(GLOBAL_STAGE, square), to_square

    def plateau_corners(self, image: np.ndarray, method: str | None = None, seen=None):
        """The global stage on the whole radiograph: the two tibial plateau corners in the image's pixels, their
        confidences and the auxiliary outputs (P(right), P(implant)); ``method`` as for ``_run``; ``seen``: this
        image's ``global_pass`` when already made."""
        out, to_square = seen or self.global_pass(image)
        corners, conf, aux = self._decode(GLOBAL_STAGE, out, method)
        return apply_affine(invert_affine(to_square), corners), conf, aux

    def plateau_corner_modes(self, image: np.ndarray, seen=None) -> tuple[np.ndarray, np.ndarray] | None:
        """The global stage's two strongest separate corner modes (``decode_two_modes`` on both corners' maps) in the
        image's pixels, strongest first, and the probability each corner's map puts at each (rows: medial, lateral
        map; columns: mode); None when the maps do not show two points. ``seen`` as for ``plateau_corners``."""
        out, to_square = seen or self.global_pass(image)
        found = decode_two_modes(out.heatmaps[0], self.nets[GLOBAL_STAGE].cfg.stem_stride)
        if found is None:
            return None
        modes, mass = (t.cpu().numpy().astype(np.float64) for t in found)
        return apply_affine(invert_affine(to_square), modes), mass

    def corners_told_apart(self, image: np.ndarray, tag: str | None, p_right: float, seen=None
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Both plateau corners decoded on one point: the global stage cannot tell which corner is which (the knee's
        side), and each corner's map peaks at both corners. Its two modes are the corners, ordered by the laterality
        tag (a right knee as acquired has its lateral corner on the image's left), or without one by the
        right-knee classifier (the caller then makes the result low-confidence). Their confidence: the mean
        probability both maps put at each. Raises ``UnsupportedImage`` when the maps show no two points. ``seen`` as
        for ``plateau_corners``."""
        found = self.plateau_corner_modes(image, seen)
        if found is None or on_one_point(found[0], image.shape):
            raise UnsupportedImage("no knee found: the tibial plateau corners could not be told apart")
        modes, mass = found
        right = tag == "R" if tag is not None else p_right >= 0.5
        order = [0, 1] if (modes[0, 0] > modes[1, 0]) == right else [1, 0]  # medial corner first
        return modes[order], mass.mean(axis=0)[order]

    def _implant_probability(self, image_left: np.ndarray | FrameSampler, reference: np.ndarray) -> float:
        """The implant stage's probability of an implant, from the joint in its frame (left view)."""
        spec = self.bundle.implant_frame
        frame = FrameSampler.of(image_left).frame(frame_matrix(reference, spec), spec)
        _, _, aux = self._run(IMPLANT_STAGE, frame)
        return float(aux[STAGES[IMPLANT_STAGE].aux.index("implant")])

    def _local(self, image_left: np.ndarray | FrameSampler, reference: np.ndarray, phase: str):
        matrix = frame_matrix(reference, self.bundle.frame_spec)
        frame = FrameSampler.of(image_left).frame(matrix, self.bundle.frame_spec)
        pts, conf, _ = self._run(local_stage(phase), frame)
        return apply_affine(invert_affine(matrix), pts), conf

    def predict(self, ds: pydicom.Dataset) -> KneePrediction:
        t0 = time.perf_counter()
        radiograph = load_radiograph(ds)
        decode_ms = (time.perf_counter() - t0) * 1000
        pred = self.predict_image(radiograph.image, radiograph.laterality_tag, radiograph.pixel_spacing_mm,
                                  radiograph.pixel_spacing_source)
        pred.timings_ms = {"decode": decode_ms, **pred.timings_ms}
        pred.timings_ms["total"] += decode_ms
        return pred

    def predict_image(self, image: np.ndarray, laterality_tag: str | None = None,
                      pixel_spacing_mm: tuple[float, float] | None = None,
                      spacing_source: str | None = None) -> KneePrediction:
        """Predict on a normalised float image in [0, 1] (bone bright), as acquired. ``spacing_source``: the tag the
        spacing came from ("PixelSpacing" or "ImagerPixelSpacing"; widths from the latter say so)."""
        frames = FrameSampler(image)
        pred = self._measure(frames, laterality_tag, pixel_spacing_mm, spacing_source)
        pred.pixel_spacing_source = spacing_source if pixel_spacing_mm else None
        if self.consistency:
            t = time.perf_counter()
            self._check_consistency(pred, frames, laterality_tag, pixel_spacing_mm)
            pred.timings_ms["consistency"] = (time.perf_counter() - t) * 1000
            pred.timings_ms["total"] += pred.timings_ms["consistency"]
        if pred.low_confidence:  # the panel's aTFA is never more confident than the result's own
            why = "; ".join(pred.warnings) or f"confidence {pred.confidence:.2f} below the threshold"
            atfa = {n: m for n, m in pred.measurements.items() if n.startswith("atfa")}
            pred.measurements.update(grade(atfa, pred.landmark_confidence, self.confidence_threshold, 0.0, [why]))
        pred.measurements = apply_site_ranges(pred.measurements, self.reference_ranges)
        return pred

    def _measure(self, image: np.ndarray | FrameSampler, laterality_tag: str | None,
                 pixel_spacing_mm: tuple[float, float] | None, spacing_source: str | None = None,
                 panel: bool = True, at_levels: ShaftLevels | None = None) -> KneePrediction:
        """One measurement of ``image``; ``panel``: the measurement panel and the landmark stages' check of the
        phase too (not for the consistency copies, whose phase is compared with the original's);
        ``at_levels``: measure the angles at these shaft levels, not at those the image's exposed field gives."""
        timings: dict[str, float] = {}
        warnings: list[str] = []
        t = time.perf_counter()
        frames = FrameSampler.of(image)
        image = frames.image
        h, w = image.shape
        seen = self.global_pass(image)
        reference, ref_conf, aux = self.plateau_corners(image, seen=seen)
        p_right, p_implant = float(aux[0]), float(aux[1])
        one_point = on_one_point(reference, image.shape)
        if one_point:  # rare: both maps' modes are read
            reference, ref_conf = self.corners_told_apart(image, laterality_tag, p_right, seen)
        timings[GLOBAL_STAGE] = (time.perf_counter() - t) * 1000
        order_right = bool(reference[1, 0] < reference[0, 0])  # lateral corner left of the medial one

        laterality, source, p_side, c_side = self._decide_laterality(laterality_tag, order_right, p_right, warnings)
        if one_point and source == "image":
            warnings.append(f"{CORNERS_NOT_TOLD_APART}; the right-knee classifier reads {laterality} "
                            f"(probability {p_side:.2f})")
            c_side = 0.0
        image_left = frames.mirrored() if laterality == "R" else frames
        ref_left = mirror_points(reference, w) if laterality == "R" else reference
        if IMPLANT_STAGE in self.nets:
            t = time.perf_counter()
            p_implant = self._implant_probability(image_left, ref_left)
            timings[IMPLANT_STAGE] = (time.perf_counter() - t) * 1000
        phase = POSTOP if p_implant >= IMPLANT_PROBABILITY_SPLIT else PREOP
        c_phase = 1.0
        if max(p_implant, 1.0 - p_implant) < PHASE_CERTAINTY:
            c_phase = 0.0
            warnings.append(f"pre/post-op uncertain (implant probability {p_implant:.2f})")

        t = time.perf_counter()
        points, conf = self._local(image_left, ref_left, phase)
        timings["local"] = (time.perf_counter() - t) * 1000
        if panel and c_phase > 0.0:
            t = time.perf_counter()
            phase, points, conf, c_phase = self._check_phase_with_outlines(image_left, ref_left, phase, points, conf,
                                                                           p_implant, warnings)
            timings["phase_check"] = (time.perf_counter() - t) * 1000
        scheme = self.schemes[phase]
        first_ref = points[list(scheme.roles["reference"])]
        collapsed = on_one_point(first_ref, image.shape)
        if collapsed:
            warnings.append("local stage put the plateau corners together: no refinement, result unreliable")
        if self.refine and not collapsed:
            t = time.perf_counter()
            points, conf = self._local(image_left, first_ref, phase)
            timings["refine"] = (time.perf_counter() - t) * 1000
        final_ref = points[list(scheme.roles["reference"])]
        length = float(np.linalg.norm(final_ref[1] - final_ref[0]))
        frame_ref = first_ref if self.refine and not collapsed else ref_left  # what built the final frame

        def moved(ref: np.ndarray) -> float:
            return float(np.max(np.linalg.norm(final_ref - ref, axis=1))) / max(length, 1e-6)

        shifts = {"global": moved(ref_left), "frame": moved(frame_ref)}
        if (source == "image" or one_point) and c_side > 0.0:  # the tag ordered the corners: the fibula checks it
            c_side = self._fibula_confirms_side(conf, scheme, laterality, source, warnings)

        landmarks = mirror_points(points, w) if laterality == "R" else points
        whole_reasons = list(warnings)  # so far every warning concerns the landmark set as a whole
        exposed = exposed_levels(image, landmarks, scheme, length)
        bone_levels = {bone: choose_bone_levels(bone, exposed.get(bone, set())) for bone in ("femur", "tibia")}
        unmeasurable = {bone: short_shaft_reason(bone) for bone, lv in bone_levels.items() if lv is None}
        warnings.extend(unmeasurable.values())
        default = ShaftLevels()
        tibia_levels = tuple(reversed(bone_levels["tibia"])) if bone_levels["tibia"] else default.tibia
        panel_levels = ShaftLevels(femur=bone_levels["femur"] or default.femur, tibia=tibia_levels)
        levels = at_levels or (None if unmeasurable else panel_levels)
        alignment = compute_alignment(landmarks, scheme, laterality, pixel_spacing_mm, levels or default)
        flat_notch = self._flat_notch(landmarks, scheme, pixel_spacing_mm)
        if flat_notch:
            warnings.append(flat_notch)
        c_aligned, c_whole, graded = self._confidence(conf, scheme, shifts["global"], alignment, length,
                                                      pixel_spacing_mm, float(ref_conf.min()), warnings, whole_reasons)
        c_aligned *= 0.0 if flat_notch else 1.0
        c_whole *= c_side * c_phase
        confidence = c_aligned * c_whole * (1.0 if levels is not None else 0.0)
        if confidence < self.confidence_threshold and not warnings:  # no check failed outright: name the weakest
            _, reason, whole = min(graded)
            warnings.append(reason)
            if whole:
                whole_reasons.append(reason)
        measurements = {}
        if panel:
            t = time.perf_counter()
            inside = (landmarks[:, 0] >= 0) & (landmarks[:, 0] <= w - 1) & (landmarks[:, 1] >= 0) & (
                landmarks[:, 1] <= h - 1)
            same = alignment if levels is not None else None  # otherwise the panel's own levels for the other bone
            geometric = compute_measurements(
                landmarks, scheme, laterality, pixel_spacing_mm, levels=panel_levels, unmeasurable_axes=unmeasurable,
                visible=inside, spacing_source=spacing_source, names=self.measurement_names, alignment=same)
            measurements = grade(geometric, conf, self.confidence_threshold, c_whole, whole_reasons)
            if flat_notch:  # the panel's femoral axis runs to the notch's midpoint too
                measurements = distrust_through(measurements, scheme.roles["femoral_notch"], flat_notch)
            timings["measurements"] = (time.perf_counter() - t) * 1000
        timings["total"] = sum(timings.values())
        return KneePrediction(
            landmarks=landmarks, landmark_confidence=conf, scheme_id=scheme.id, phase=phase,
            phase_probability=p_implant, laterality=laterality, laterality_source=source,
            laterality_probability=p_side,
            alignment=alignment, confidence=confidence, confidence_threshold=self.confidence_threshold,
            pixel_spacing_mm=pixel_spacing_mm, reference_length_px=length,
            model_name=self.bundle.name, model_version=self.bundle.version,
            timings_ms=timings, warnings=warnings, model_sha256=self.bundle.sha256,
            measurements=measurements, reference_shift=shifts,
        )

    def _check_consistency(self, pred: KneePrediction, frames: FrameSampler, tag: str | None,
                           spacing: tuple[float, float] | None) -> None:
        """Measure a mirrored and a rotated copy of ``frames``' image; a disagreement beyond the tolerance lowers the
        confidence to 0."""
        swapped = {"L": "R", "R": "L"}.get(tag) if tag else None
        copies = {"mirrored copy": (frames.mirrored(), swapped)}
        if spacing is None or abs(spacing[0] - spacing[1]) <= 1e-3 * max(spacing):  # rotation needs square pixels
            turned = FrameSampler(rotated(frames.image, CONSISTENCY_ROTATION_DEG))
            copies[f"copy rotated by {CONSISTENCY_ROTATION_DEG:g} deg"] = (turned, tag)
        mine = {"FNTS": pred.alignment.atfa_fnts_deg, "FTS": pred.alignment.atfa_fts_deg}
        for name, (copy, copy_tag) in copies.items():
            try:
                # at the original's levels: the copies test the landmarks, not the exposure check's decision at a
                # level whose cortex step is near the threshold (other levels move the angle by themselves)
                other = self._measure(copy, copy_tag, spacing, panel=False, at_levels=pred.alignment.levels)
            except UnsupportedImage:
                pred.consistency[name] = None
                self._distrust(pred, f"inconsistent: no knee found in a {name}")
                continue
            if any(w.startswith(CORNERS_NOT_TOLD_APART) for w in other.warnings):
                # the copy's side is the right-knee classifier's alone, which can be as wrong on the copy as on the
                # original: a knee measured on the wrong side twice agrees with itself, so this confirms nothing
                pred.consistency[name] = None
                self._distrust(pred, f"inconsistent: the plateau corners of a {name} could not be told apart")
                continue
            theirs = {"FNTS": other.alignment.atfa_fnts_deg, "FTS": other.alignment.atfa_fts_deg}
            diff = {k: theirs[k] - mine[k] for k in mine}
            pred.consistency[name] = {k: round(v, 3) for k, v in diff.items()}
            worst = max(diff, key=lambda k: abs(diff[k]))
            if abs(diff[worst]) > CONSISTENCY_TOLERANCE_DEG or other.phase != pred.phase:
                self._distrust(pred, f"inconsistent: a {name} measures {theirs[worst]:.1f} deg ({worst}) instead of "
                                     f"{mine[worst]:.1f}" if other.phase == pred.phase
                               else f"inconsistent: a {name} is read as {other.phase}")

    def _distrust(self, pred: KneePrediction, warning: str) -> None:
        """A copy disagrees: the result and every measurement of its panel become low-confidence."""
        pred.warnings.append(warning)
        pred.confidence = 0.0
        pred.measurements = grade(pred.measurements, pred.landmark_confidence, self.confidence_threshold, 0.0,
                                  [warning])

    @staticmethod
    def _decide_laterality(tag: str | None, order_right: bool, p_right: float,
                           warnings: list[str]) -> tuple[str, str, float, float]:
        """``(laterality, source, probability of the image's side, confidence factor)``.

        The tag, when present, is what the result is measured as; an image that reads the other side (its
        reference points in the other order) makes the result low-confidence. Without a tag the image decides by the
        order of its reference points, and the right-knee classifier must not contradict it with
        ``LATERALITY_CERTAINTY``; the probability reported is the classifier's for the side decided.
        """
        from_image = "R" if order_right else "L"
        p_image = p_right if from_image == "R" else 1.0 - p_right
        if tag is not None:
            if from_image != tag:
                warnings.append(f"laterality tag {tag} contradicted by the image (which reads {from_image}, "
                                f"probability {p_image:.2f}): measured as {tag}, not reliable")
                return tag, "tag", p_image, 0.0
            return tag, "tag", p_image, 1.0
        if p_image <= 1.0 - LATERALITY_CERTAINTY:
            warnings.append(f"laterality uncertain: the plateau corners read {from_image}, the classifier the other "
                            f"side (probability {1.0 - p_image:.2f})")
            return from_image, "image", p_image, 0.0
        return from_image, "image", p_image, 1.0

    @staticmethod
    def _flat_notch(landmarks: np.ndarray, scheme, spacing: tuple[float, float] | None) -> str | None:
        """The reason FNTS cannot be trusted when the femoral notch is too shallow to place its midpoint
        (``model.alignment.MIN_NOTCH_DEPTH``), else None."""
        depth = notch_depth(landmarks, scheme, spacing)
        if depth is None or depth >= MIN_NOTCH_DEPTH:
            return None
        where = "above" if depth >= 0 else "below"  # below: landmarks in disarray, other warnings say why
        return (f"femoral notch too shallow to place its midpoint (its roof {100 * abs(depth):.1f} % of the plateau "
                f"width {where} the condyles, less than {100 * MIN_NOTCH_DEPTH:g} % above): FNTS not reliable")

    @staticmethod
    def _fibula_confirms_side(conf: np.ndarray, scheme, laterality: str, source: str, warnings: list[str]) -> float:
        """1.0, or 0.0 with a warning when the fibula's landmarks are weak: the landmark stages read a left knee
        (right ones mirrored), whose fibula lies lateral; a knee mirrored the wrong way shows it on the other side.
        For a side read from the image, and for corners the tag ordered (``corners_told_apart``); a tag is never
        overruled, only made low-confidence. A scheme without fibula curves passes."""
        fibula = [i for curve in scheme.curves if curve.bone == "fibula" for i in curve.indices]
        if not fibula:
            return 1.0
        c_fibula = float(np.mean(conf[fibula]))
        if c_fibula >= FIBULA_SIDE_CONFIDENCE:
            return 1.0
        by = "the laterality tag" if source == "tag" else "the side read from the image"
        warnings.append(f"laterality uncertain: the fibula is not found where {by} ({laterality}) puts it "
                        f"(confidence {c_fibula:.2f})")
        return 0.0

    def _implant_outline_indices(self) -> list[int]:
        return [i for curve in self.schemes[POSTOP].curves if curve.bone == "implant" for i in curve.indices]

    def _outline_evidence(self, conf: Mapping[str, np.ndarray]) -> tuple[float, float]:
        """``(implant outlines, native knee)`` from each phase's landmark confidences in one frame."""
        return float(np.mean(conf[POSTOP][self._implant_outline_indices()])), float(np.mean(conf[PREOP]))

    def outline_confidences(self, image_left: np.ndarray | FrameSampler, reference: np.ndarray
                            ) -> tuple[float, float] | None:
        """``(implant outlines, native knee)``: the post-op stage's mean heatmap confidence on the implant's outlines
        and the pre-op stage's on its landmarks, both in the frame of ``reference`` (a left view). None when the
        post-op scheme has no implant curves or the bundle lacks a landmark stage."""
        if not self._implant_outline_indices() or any(local_stage(p) not in self.nets for p in PHASE_NAMES):
            return None
        left = FrameSampler.of(image_left)
        return self._outline_evidence({p: self._local(left, reference, p)[1] for p in PHASE_NAMES})

    def _check_phase_with_outlines(self, image_left: FrameSampler, reference: np.ndarray, phase: str,
                                   points: np.ndarray, conf: np.ndarray, p_implant: float, warnings: list[str]):
        """``(phase, points, confidences, phase confidence)``. The landmark stages must agree with the phase
        decided: the post-op stage finds the implant's outlines about as surely as the pre-op stage finds the native
        knee (the bundle's split, by default ``IMPLANT_OUTLINE_EVIDENCE``) exactly when it is post-op. ``points``,
        ``conf``: the decided phase's first landmarks in the frame of ``reference``, where the other phase's stage
        runs here. When the two disagree, the landmark stages' phase is measured (it carries over to images of another
        source where the implant stage does not, docs/results/phase-outline-check.md), low-confidence with the
        reason. Unchanged when the post-op scheme has no implant curves or the bundle lacks the other stage."""
        other = PREOP if phase == POSTOP else POSTOP
        if not self._implant_outline_indices() or local_stage(other) not in self.nets:
            return phase, points, conf, 1.0
        other_points, other_conf = self._local(image_left, reference, other)
        c_implant, c_native = self._outline_evidence({phase: conf, other: other_conf})
        finds_implant = c_implant - c_native >= self.implant_outline_evidence
        if finds_implant == (phase == POSTOP):
            return phase, points, conf, 1.0
        what = "find an implant" if finds_implant else "find none"  # short: the overlay's legend shows it
        warnings.append(f"pre/post-op uncertain: implant classifier says {PHASES[phase].word}, landmark stages "
                        f"{what} (outlines {c_implant:.2f}, knee {c_native:.2f}); measured as {PHASES[other].word}")
        return other, other_points, other_conf, 0.0

    @staticmethod
    def _confidence(conf, scheme, shift, alignment, length, spacing, global_conf, warnings, whole_reasons
                    ) -> tuple[float, float, list[tuple[float, str, bool]]]:
        """``(angle part, whole part, graded checks)`` of the result's confidence, each part a product of checks in
        [0, 1]: the angle part concerns the aTFA (its landmarks' heatmap confidence, a plausible angle, FTS and FNTS
        in agreement), the whole part the landmark set (the final reference points near the global stage's, ``shift``
        away in plateau widths; the global stage's confidence; a plausible plateau width). The result's confidence is
        their product (times laterality and phase). A check that fails outright adds its warning to ``warnings`` (and
        to ``whole_reasons`` when it concerns the whole set); the graded ones come back as ``(value, reason, concerns
        the whole set)`` so that a result they bring below the threshold can name the weakest."""
        roles = axis_points(scheme, alignment.levels)
        c_points = float(np.mean(conf[roles]))
        # The final reference points should lie near the global stage's.
        c_consistency = float(np.clip(1.0 - shift / REFERENCE_SHIFT_LIMIT, 0.0, 1.0))
        c_angle = c_width = 1.0
        if max(abs(alignment.atfa_fts_deg), abs(alignment.atfa_fnts_deg)) > MAX_PLAUSIBLE_ATFA_DEG:
            c_angle = 0.0
            warnings.append(f"implausible angle (> {MAX_PLAUSIBLE_ATFA_DEG:g} degrees)")
        disagreement = abs(alignment.atfa_fts_deg - alignment.atfa_fnts_deg)
        if disagreement > MAX_METHOD_DISAGREEMENT_DEG:
            c_angle = 0.0
            warnings.append(f"FTS and FNTS disagree by {disagreement:.1f} degrees (more than "
                            f"{MAX_METHOD_DISAGREEMENT_DEG:g})")
        if spacing is not None:
            plateau_mm = length * float(np.sqrt(spacing[0] * spacing[1]))
            if not PLATEAU_WIDTH_MM[0] <= plateau_mm <= PLATEAU_WIDTH_MM[1]:
                c_width = 0.0
                reason = f"implausible tibial plateau width {plateau_mm:.0f} mm"
                warnings.append(reason)
                whole_reasons.append(reason)
        c_global = min(1.0, global_conf / GLOBAL_CONFIDENCE_FULL)
        heatmaps, corners, unsure = GRADED_CHECKS
        graded = [(c_points, f"{heatmaps} (mean confidence {c_points:.2f})", False),
                  (c_consistency, f"{corners} ({100 * shift:.0f} % of the plateau width)", True),
                  (c_global, f"{unsure} (confidence {global_conf:.2f})", True)]
        return float(np.clip(c_points * c_angle, 0.0, 1.0)), c_consistency * c_width * c_global, graded


def axis_points(scheme, levels: ShaftLevels) -> list[int]:
    """The landmarks the angles were built from: the chosen shaft levels' cortex points and the notch pair."""
    pairs = [scheme.roles["femoral_notch"]]
    if levels.fixed:
        pairs += [scheme.roles[r] for r in ("femoral_shaft_proximal", "femoral_shaft_distal", "tibial_shaft_proximal",
                                            "tibial_shaft_distal")]
    else:
        pairs += [scheme.shaft_pair("femur", lv) for lv in levels.femur]
        pairs += [scheme.shaft_pair("tibia", lv) for lv in levels.tibia]
    return sorted({i for pair in pairs for i in pair})


def rotation(shape: tuple[int, int], degrees: float) -> tuple[np.ndarray, tuple[int, int]]:
    """The 2x3 matrix taking an image of ``shape`` (h, w) to its copy rotated about its centre by ``degrees``, and the
    copy's canvas ``(width, height)``, large enough to lose nothing."""
    h, w = shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    cos, sin = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(np.ceil(h * sin + w * cos)), int(np.ceil(h * cos + w * sin))
    m[:, 2] += [(nw - w) / 2, (nh - h) / 2]
    return m, (nw, nh)


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """``image`` rotated about its centre by ``degrees`` on a canvas large enough to lose nothing (dark fill)."""
    m, size = rotation(image.shape, degrees)
    return cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
