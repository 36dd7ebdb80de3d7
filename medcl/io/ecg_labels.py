"""Names for the label codes an ECG file carries: SNOMED-CT (CinC 2021, SPH) and PTB-XL SCP statements.

Tables shipped in ``medcl/resources`` (see its README): ``snomed_ct_names.csv`` (the 133 SNOMED-CT
codes of the PhysioNet/CinC Challenge 2021 mapping tables, BSD-2) and
``ptbxl_scp_statements.csv`` (the 71 PTB-XL statements, CC BY 4.0).
"""

from __future__ import annotations

import csv
import functools
from collections.abc import Iterable
from importlib import resources


def _table(name: str) -> list[dict[str, str]]:
    text = resources.files("medcl.resources").joinpath(name).read_text()
    return list(csv.DictReader(text.splitlines()))


@functools.lru_cache(maxsize=1)
def snomed_names() -> dict[str, tuple[str, str]]:
    """SNOMED-CT code -> (abbreviation, name)."""
    return {r["snomed_code"]: (r["abbreviation"], r["name"]) for r in _table("snomed_ct_names.csv")}


@functools.lru_cache(maxsize=1)
def scp_descriptions() -> dict[str, str]:
    """PTB-XL SCP code -> description."""
    return {r["code"]: r["description"] for r in _table("ptbxl_scp_statements.csv")}


def describe_codes(snomed: Iterable[str] = (), scp: Iterable[str] = ()) -> list[dict[str, str]]:
    """``[{"code", "system", "name", "abbreviation"}]`` for the given codes, unknown codes named as such."""
    out = []
    names = snomed_names()
    for code in dict.fromkeys(str(c).strip() for c in snomed if str(c).strip()):
        abbr, name = names.get(code, ("", "code not in medcl's SNOMED-CT table"))
        out.append({"code": code, "system": "SNOMED-CT", "name": name, "abbreviation": abbr})
    desc = scp_descriptions()
    for code in dict.fromkeys(str(c).strip() for c in scp if str(c).strip()):
        out.append({"code": code, "system": "SCP-ECG", "name": desc.get(code, "code not in the PTB-XL statements"),
                    "abbreviation": code})
    return out
