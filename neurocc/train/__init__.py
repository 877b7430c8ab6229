"""Training helpers (PyTorch) for networks neurocc converts or compiles.

``heads``: intermediate-prediction heads trained with the τ(e) schedule of the Bayesian-fusion paper
(eq. 19-21), or fitted afterwards, and exported as extra ONNX outputs.
``snn``: directly trained spiking networks (BNTT; soft-reset IF with MPR), trained with BPTT and a surrogate
gradient and exported as neurocc's one-step trained-SNN ONNX (``neurocc.Spike``, ``neurocc.BNTT``).
"""
from neurocc.train.heads import (EpochLog, HeadedModel, accuracies, add_heads, export_onnx, fit_linear_heads,
                                 head_cost_ratio, head_name, tau, train_with_heads)
from neurocc.train.snn import (BNTT, SpikeFunction, SpikingNet, SpikingNeuron, ann_cnn, bntt_cnn, export_snn_onnx,
                               mpr, snn_onnx, snn_predictions, srif_cnn, train_snn)

__all__ = ["BNTT", "EpochLog", "HeadedModel", "SpikeFunction", "SpikingNet", "SpikingNeuron", "accuracies",
           "add_heads", "ann_cnn", "bntt_cnn", "export_onnx", "export_snn_onnx", "fit_linear_heads",
           "head_cost_ratio", "head_name", "mpr", "snn_onnx", "snn_predictions", "srif_cnn", "tau",
           "train_snn", "train_with_heads"]
