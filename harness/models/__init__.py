"""Model sources (one module each) behind a single ``load_model``."""

from harness.models.loader import LoadedModel, load_model, resolve_device, resolve_dtype
from harness.models.params import ParamCounts, count_params

__all__ = ["LoadedModel", "load_model", "resolve_device", "resolve_dtype", "ParamCounts", "count_params"]
