"""The PTB-XL SCP statements shipped with medcl, their label sets and ProtoECGNet's branch groups.

Kept apart from :mod:`medcl.data.ptbxl` (the dataset) so that folder datasets and inference can
name labels without importing the PTB-XL reader.
"""

from __future__ import annotations

import functools
from importlib import resources

import pandas as pd

from medcl.errors import MedclError

__all__ = ["BRANCH_CATEGORY", "LABEL_SETS", "label_names", "load_label_groups", "packaged_statements"]

LABEL_SETS = (
    "all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm",
    "rhythm_branch", "morphology_branch", "global_branch",
)
"""Accepted ``label_set`` names; the ``*_branch`` ones are ProtoECGNet's prototype groups."""
BRANCH_CATEGORY = {"rhythm": 1, "morphology": 3, "global": 4}
"""ProtoECGNet prototype categories (Sethi et al., 2025): 1 rhythm, 3 local morphology, 4 global."""


@functools.lru_cache(maxsize=1)
def packaged_statements() -> pd.DataFrame:
    """The 71 PTB-XL SCP statements shipped with medcl (``medcl/resources/ptbxl_scp_statements.csv``).

    Columns: code, description, diagnostic, form, rhythm (0/1), diagnostic_class,
    diagnostic_subclass, statement_category, prototype_category (CC BY 4.0 PTB-XL; categories MIT,
    ProtoECGNet authors; see resources/README.md).
    """
    with resources.files("medcl.resources").joinpath("ptbxl_scp_statements.csv").open() as fh:
        return pd.read_csv(fh, keep_default_na=False, dtype={"code": str})


def load_label_groups() -> dict[str, list[str]]:
    """ProtoECGNet's three branch label groups: ``{"rhythm": 16, "morphology": 52, "global": 3}`` codes.

    Each list is sorted by code, so it is an ordered subsequence of the ``all`` label set.
    """
    table = packaged_statements()
    return {
        branch: sorted(table.loc[table.prototype_category == cat, "code"])
        for branch, cat in BRANCH_CATEGORY.items()
    }


def label_names(label_set: str, statements: pd.DataFrame | None = None) -> list[str]:
    """The sorted label names of ``label_set`` (see :data:`LABEL_SETS`)."""
    table = packaged_statements() if statements is None else statements
    if label_set.endswith("_branch") and label_set in LABEL_SETS:
        return load_label_groups()[label_set.removesuffix("_branch")]
    if label_set == "all":
        return sorted(table.code)
    if label_set in ("diagnostic", "form", "rhythm"):
        return sorted(table.loc[table[label_set] == 1, "code"])
    if label_set in ("subdiagnostic", "superdiagnostic"):
        col = "diagnostic_subclass" if label_set == "subdiagnostic" else "diagnostic_class"
        return sorted({v for v in table.loc[table.diagnostic == 1, col] if v})
    raise MedclError(f"label_set: unknown value {label_set!r}; expected one of {', '.join(LABEL_SETS)}")
