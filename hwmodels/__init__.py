"""Hardware models of the targets (one TOML per chip, every number with its source) and their loader."""
from .loader import HwModel, HwModelError, available_hwmodels, load_hwmodel, load_hwmodel_file

__all__ = ["HwModel", "HwModelError", "available_hwmodels", "load_hwmodel", "load_hwmodel_file"]
