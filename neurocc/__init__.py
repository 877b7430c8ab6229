"""neurocc: compile trained neural networks (ONNX) to spiking networks for neuromorphic targets."""
__version__ = "0.1.0"
