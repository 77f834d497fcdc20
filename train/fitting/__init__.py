"""Fitting: the run configuration, the data a run trains on, the per-stage loop with checkpoints, and the
bundle it writes (``knee-train fit CONFIG``)."""

from train.fitting.config import ConfigError, RunConfig, load_config
from train.fitting.run import fit

__all__ = ["ConfigError", "RunConfig", "fit", "load_config"]
