"""Deployment: export to ONNX (and TensorRT), checked for parity and accuracy against PyTorch."""
