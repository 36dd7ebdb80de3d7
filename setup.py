"""Minimal shim: metadata lives in pyproject.toml (PEP 621).

Only the package list is computed here, because ``pipelines/`` is installed as the subpackage
``medcl.pipelines`` (``package-dir`` in pyproject.toml). Data folders such as
``medcl/explain/templates`` are namespace packages so their files ship as package data.
"""

from setuptools import find_namespace_packages, setup

EXCLUDE = ["*.__pycache__", "*.__pycache__.*"]
packages = find_namespace_packages(include=["medcl", "medcl.*"], exclude=EXCLUDE)
packages += ["medcl.pipelines"] + [f"medcl.pipelines.{name}" for name in find_namespace_packages("pipelines", exclude=EXCLUDE)]

setup(packages=packages)
