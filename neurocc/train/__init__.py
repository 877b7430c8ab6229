"""Training helpers (PyTorch) for networks neurocc converts.

``heads``: intermediate-prediction heads trained with the τ(e) schedule of the Bayesian-fusion paper
(eq. 19-21), or fitted afterwards, and exported as extra ONNX outputs.
"""
from neurocc.train.heads import (EpochLog, HeadedModel, accuracies, add_heads, export_onnx, fit_linear_heads,
                                 head_cost_ratio, head_name, tau, train_with_heads)

__all__ = ["EpochLog", "HeadedModel", "accuracies", "add_heads", "export_onnx", "fit_linear_heads",
           "head_cost_ratio", "head_name", "tau", "train_with_heads"]
