"""Synthetic samples from either renderer: ``"2d"`` (``train.synth``, the parametric outline generator) or ``"3d"``
(``train.xray3d``, 3D solids projected like X-rays). One case per seed, rendered in memory (training renders at a
coarse pixel spacing, e.g. 0.5 mm, which is finer than either stage's input and far cheaper to render).

Rendering uses worker processes (``spawn``, so they never inherit torch's thread pools) when asked.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from tqdm import tqdm

from model.preprocess import normalize_image
from train.data.sample import KneeSample, as_spacing
from train.data.store import SampleStore

RENDERERS = ("2d", "3d")
RENDERER_NAMES = {"2d": "synthetic", "3d": "xray3d"}  # as the data sets and the cases' sources name them
MAX_DRAWS = 5  # the projection renderer draws a seed's case again when its outline misses a landmark level


def _check_renderer(renderer: str) -> None:
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, got {renderer!r}")


def renderer_functions(renderer: str, variants: Sequence[str] = ()) -> tuple[Callable, Callable,
                                                                           tuple[type[Exception], ...]]:
    """``(sample_case, render_case, redrawn)`` of ``renderer`` ("2d" or "3d"), each imported only when used:
    ``sample_case(seed, phase=, hard=, ...)`` with the 2D generator's ``variants`` switched on
    (``train.synth.anatomy.VARIANTS``; the 3D renderer has none), and the exceptions of ``render_case`` after which
    a case is drawn again (the projection renderer's outline misses)."""
    _check_renderer(renderer)
    if renderer == "3d":
        if variants:
            raise ValueError(f"variants {list(variants)} are options of the 2d renderer only")
        from train.xray3d import render_case, sample_case
        from train.xray3d.outlines import OutlineError
        return sample_case, render_case, (OutlineError,)
    from train.synth import render_case as render_2d
    from train.synth import sample_case as sample_2d
    return functools.partial(sample_2d, **dict.fromkeys(variants, True)), render_2d, ()


def renderer_version(renderer: str) -> str:
    """The version of ``renderer``'s images and ground truth ("2d": ``train.synth``, "3d": ``train.xray3d``), as
    recorded beside anything rendered or measured with it (caches, evaluation summaries, model cards)."""
    _check_renderer(renderer)
    if renderer == "3d":
        from train.xray3d import RENDERER_VERSION
        return RENDERER_VERSION
    from train.synth import GENERATOR_VERSION
    return GENERATOR_VERSION


def render_synthetic(seed: int, phase: str | None = None, hard: bool = False, spacing_mm: float | None = None,
                     open_field: bool = False, renderer: str = "2d", variants: Sequence[str] = ()):
    """The renderer's image of the case of ``seed`` (``train.synth`` or ``train.xray3d``, with its DICOM attributes
    and ground truth); a projection whose outline misses a landmark level is drawn again, up to ``MAX_DRAWS`` times.
    ``open_field`` removes the collimator (the image's own borders still crop); ``variants`` (2D generator only)
    widen its distribution (``train.synth.anatomy.VARIANTS``: ``implant_designs``, ``dense_plates``,
    ``filled_notch``)."""
    sample_case, render_case, redrawn = renderer_functions(renderer, variants)
    for draw in range(MAX_DRAWS):
        case = sample_case(seed, phase=phase, hard=hard, **({"draw": draw} if draw else {}))
        if open_field:
            case = dataclasses.replace(case, acquisition=dataclasses.replace(case.acquisition, collimation=None))
        try:
            return render_case(case, pixel_spacing_mm=spacing_mm)
        except redrawn:
            if draw == MAX_DRAWS - 1:
                raise
    raise AssertionError("unreachable")


def synthetic_sample(seed: int, phase: str | None = None, hard: bool = False, spacing_mm: float | None = None,
                     open_field: bool = False, renderer: str = "2d", variants: Sequence[str] = ()) -> KneeSample:
    """Render the case of ``seed`` (``render_synthetic``) and normalise it exactly as ``model.preprocess`` does for
    DICOM input."""
    img = render_synthetic(seed, phase, hard, spacing_mm, open_field, renderer, variants)
    meta = {"visible": img.visible}  # per landmark: inside the image and the exposed field
    if renderer == "3d":
        meta["atfa_axes_deg"] = float(img.atfa_axes_deg)
        meta["panel"] = img.panel  # the measurement panel: "projected" (exact) and "design" values
    return KneeSample(
        image=normalize_image(img.image, img.photometric),
        landmarks=img.landmarks,
        laterality=img.laterality,
        phase=img.phase,
        pixel_spacing_mm=as_spacing(img.pixel_spacing_mm),
        source=f"{RENDERER_NAMES[renderer]}:{seed}{':hard' if hard else ''}"
               f"{''.join(':' + v for v in variants)}",
        atfa_fts_deg=float(img.atfa_fts_deg),
        atfa_fnts_deg=float(img.atfa_fnts_deg),
        meta=meta,
    )


def _render_job(job: tuple) -> KneeSample:
    import cv2

    cv2.setNumThreads(1)
    return synthetic_sample(*job)


def render_samples(jobs: Sequence[tuple], workers: int = 1,
                   desc: str = "render", progress: bool = True) -> Iterator[KneeSample]:
    """Render ``(seed, phase, hard, spacing_mm[, open_field[, renderer[, variants]]])`` jobs
    (``synthetic_sample``'s arguments) in order, in ``workers`` processes when > 1."""
    bar = tqdm(total=len(jobs), desc=desc, unit="img", dynamic_ncols=True, leave=False, disable=not progress)
    try:
        if workers <= 1:
            for job in jobs:
                yield synthetic_sample(*job)
                bar.update()
            return
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for sample in pool.map(_render_job, jobs, chunksize=4):
                yield sample
                bar.update()
    finally:
        bar.close()


def render_store(seeds_by_phase: dict[str, Sequence[int]], spacing_mm: float | None, workers: int = 1,
                 hard_fraction: float = 0.0, renderer: str = "2d", progress: bool = True,
                 variants: Sequence[str] = ()) -> SampleStore:
    """Render every seed of every phase into a ``SampleStore``; the last ``hard_fraction`` of each phase's seeds
    are drawn from the renderer's hard distribution."""
    jobs = []
    for phase, seeds in seeds_by_phase.items():
        first_hard = len(seeds) - round(hard_fraction * len(seeds))
        jobs += [(seed, phase, i >= first_hard, spacing_mm, False, renderer, tuple(variants))
                 for i, seed in enumerate(seeds)]
    return SampleStore(render_samples(jobs, workers, desc=f"render {len(jobs)} {renderer} synthetic cases",
                                      progress=progress))
