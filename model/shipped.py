"""Which weights the node runs when ``config.yaml`` names none: the one place that names the shipped bundle.

Torch-free on purpose: the node's main process (status page, ``kneealign_info``) reads the shipped model card through
this without loading PyTorch; ``model.weights`` loads the bundle from the same path.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_WEIGHTS = Path(__file__).parent / "weights" / "kneealign-v2.17.safetensors"
