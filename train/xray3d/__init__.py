"""A second, independently designed synthetic renderer: knees as 3D solids projected like X-rays.

Femur, tibia, fibula and patella (and post-op the femoral component, tibial tray, stem and cement) are 3D solids
with a cortical shell and a cancellous core, posed in 3D (flexion, rotation, varus/valgus, joint spaces) and
projected from a point source (Beer-Lambert line integrals, magnification, heel effect, scatter, noise, blur, soft
tissue), then processed as a modality would. Landmarks of both schemes are placed on the projected outlines by
anatomical rules, so the ground truth follows the pose. It shares no rendering code with ``train.synth``: its value
is that it is different, so that a model trained on one can be measured on the other.

    case = sample_case(seed, phase="preop")
    image = render_case(case, pixel_spacing_mm=0.5)   # stored pixels, landmarks, visibility, aTFA
"""

from train.xray3d.case import RENDERER_VERSION, Case3D, Rendered, render_case, sample_case

__all__ = ["RENDERER_VERSION", "Case3D", "Rendered", "render_case", "sample_case"]
