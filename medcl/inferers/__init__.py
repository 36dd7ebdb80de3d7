"""Inference building blocks that any workflow (and the exported MONAI bundle) reuses."""
