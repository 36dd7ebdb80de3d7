"""Minimal shim: metadata lives in pyproject.toml (PEP 621).

Only the package list is computed here, because ``pipelines/`` is installed as the subpackage
``medcl.pipelines`` (``package-dir`` in pyproject.toml).
"""

from setuptools import find_packages, setup

packages = find_packages(include=["medcl", "medcl.*"])
packages += ["medcl.pipelines"] + [f"medcl.pipelines.{name}" for name in find_packages("pipelines")]

setup(packages=packages)
