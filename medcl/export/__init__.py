"""Deployment formats: ONNX graphs with onnxruntime runners, and the zones MONAI bundle.

Weights-only files live in :mod:`medcl.engine.weights` (the engine's loader accepts them). Heavy
optional packages (onnx, onnxruntime, safetensors) are imported inside the functions that use them.
"""
