"""medcl: medical contrastive and prototype learning (SepCLR, prostate zones, ProtoECGNet).

Importing :mod:`medcl` is cheap: torch and MONAI are imported by the submodules that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
