"""Clinician-facing ProtoECGNet reports: one self-contained HTML page per ECG plus a batch index.

A report is driven by the predictions dict of ``medcl ecg predict`` (schema in docs/DEVELOPING.md,
"ECG predictions") and the signals. Per ECG it shows the escaped record metadata, the 12-lead ECG
on true-scale paper, the findings sorted by probability with their threshold and branch, and for
each finding the three prototypes that contributed most (fusion weight x similarity) as the
prototype's source training ECG beside the same window of the patient's ECG, as in ProtoECGNet
(Sethi et al., 2025, arXiv:2504.08713), plus an Integrated-Gradients lead x time strip.

Pages embed their images as base64 PNG, carry a Content-Security-Policy that forbids every
network request, use no external fonts or scripts, and print on A4/Letter landscape.

Nothing on a page or in ``report.json`` names a folder: records are shown by their id, prototype
sources by their data set and record id, and paths inside error messages are cut to file names
(:func:`redact_paths`). The header lists the labels stored in the record by name (SNOMED-CT/SCP
code in small print), the basic measurements (:mod:`medcl.explain.ecg_measurements`) and the model
card (:mod:`medcl.explain.model_card`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from medcl.errors import MedclError
from medcl.explain import ecg_attribution as attribution
from medcl.explain.ecg_plot import AttributionStrip, ComparisonPlot, Panel, TwelveLeadPlot
from medcl.io.ecg import LEADS
from medcl.utils import write_json, write_text

INTENDED_USE = (
    "Research use only. This report is produced by a machine-learning model for research and "
    "education; it is not a medical device and must not be used for diagnosis or treatment "
    "decisions. Findings must be confirmed by a qualified clinician reading the ECG itself."
)
N_PROTOTYPES = 3
WHOLE_STRIP_BRANCHES = frozenset({"rhythm", "global"})
DEFAULT_LEADS = (1, 6, 10)  # II, V1, V5 when no attribution is available
ATTRIBUTION_SMOOTH_S = 0.05  # moving average of the displayed attribution strip (seconds)
RHYTHM_LEAD = 1  # lead II, where rhythm is read


@dataclass
class ECGInput:
    """One patient ECG as the report shows it.

    Attributes:
        record: the record path as given (key of the predictions dict's ``"record"``).
        signal: ``(12, n)`` mV at ``fs`` for display (may be sampled finer than the model input).
        fs: sampling rate of ``signal`` in Hz.
        comments: the header's free-text comment lines (shown escaped).
        labels: the record's own label codes with names (:func:`medcl.io.ecg_labels.describe_codes`).
        derived_leads: leads computed from I and II because the file lacks them.
        format: the file format (``wfdb``, ``dicom``, ...); empty when unknown.
    """

    record: str
    signal: np.ndarray
    fs: float
    comments: list[str] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    derived_leads: list[str] = field(default_factory=list)
    format: str = ""


_DIRS = re.compile(r"""(?<![\w>])(?:[A-Za-z]:)?(?:[\\/][^\\/\s:'"<>]+)+[\\/](?=[^\\/\s])""")


def redact_paths(text: str) -> str:
    """``text`` with the folder part of every absolute path removed (``/a/b/rec.hea: x`` -> ``rec.hea: x``)."""
    return _DIRS.sub("", str(text))


def public_name(record: str | Path) -> str:
    """How a record is named in reports: its file/record name, without folders."""
    return Path(str(record)).name or str(record)


def visible_comments(comments: Sequence[str]) -> list[str]:
    """Header comments worth showing: ``Dx:`` lines are left out (their codes are shown by name)."""
    return [redact_paths(c) for c in comments if not c.strip().lower().startswith(("dx:", "snomedctcode:"))]


SourceLookup = Callable[[str], "tuple[np.ndarray, float] | None"]
"""Maps a prototype's ``source_record`` to its ``((12, n) mV, fs)`` signal, or None if unavailable."""


@functools.lru_cache(maxsize=1)
def template_env() -> jinja2.Environment:
    """The jinja2 environment over ``medcl/explain/templates`` with HTML autoescaping on."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("medcl.explain", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = lambda p: f"{100 * float(p):.1f}%"
    env.filters["num"] = lambda v, nd=2: "-" if v is None else f"{float(v):.{nd}f}"
    return env


def data_uri(png: bytes) -> str:
    """``data:`` URI embedding PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def safe_stem(record_id: str, taken: set[str]) -> str:
    """A file-name stem for ``record_id`` (unsafe characters replaced), unique within ``taken``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(record_id)).strip("._") or "record"
    candidate, k = stem, 2
    while candidate.lower() in taken:
        candidate, k = f"{stem}_{k}", k + 1
    taken.add(candidate.lower())
    return candidate


def format_meta(meta: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Display rows (label, value) for age, sex, sampling rate and duration ("unknown" if absent)."""
    sex = {"M": "male", "F": "female"}.get(str(meta.get("sex")), "unknown")
    age = meta.get("age")
    fs, dur = meta.get("fs"), meta.get("duration_s")
    return [
        ("Age", "unknown" if age is None else f"{float(age):g} years"),
        ("Sex", sex),
        ("Sampling rate", "unknown" if fs is None else f"{float(fs):g} Hz"),
        ("Duration", "unknown" if dur is None else f"{float(dur):.1f} s"),
    ]


def sorted_findings(record: Mapping[str, Any]) -> list[dict]:
    """The record's findings sorted by probability (highest first), each with its top prototypes."""
    findings = sorted(record.get("findings", []), key=lambda f: -float(f["probability"]))
    return [
        {**f, "prototypes": sorted(f.get("prototypes", []), key=lambda p: -float(p["contribution"]))[:N_PROTOTYPES]}
        for f in findings
    ]


class ReportRenderer:
    """Turns predictions + signals into report pages, reusing one set of figure objects.

    Args:
        dpi: resolution of the 12-lead ECG image (prototype figures use 130, strips 110).
        ig_fs: sampling rate of the attributions (the model's input rate).
    """

    def __init__(self, dpi: int = 200, ig_fs: float = 100.0, dataset: str = "training set") -> None:
        self.twelve = TwelveLeadPlot(dpi)
        self.local = ComparisonPlot(span_s=2.5, n_leads=3)
        self.whole = ComparisonPlot(span_s=10.0, n_leads=1, side_by_side=False)
        self.strip = AttributionStrip()
        self.ig_fs = ig_fs
        self.dataset = dataset

    def record_data(
        self,
        record: Mapping[str, Any],
        attributions: Mapping[str, np.ndarray],
        html_name: str,
        ecg: ECGInput | None = None,
    ) -> dict:
        """The JSON-able content of one report (no images, no folder names): metadata, labels in the
        record, measurements, findings and their prototypes (source shown as data set + record id)."""
        from medcl.explain.ecg_measurements import measure

        findings = sorted_findings(record)
        for f in findings:
            attr = attributions.get(f["code"])
            f["attribution"] = None if attr is None else attribution.summarise(attr, self.ig_fs)
            f["prototypes"] = [
                {**p, "source_record": public_name(p["source_record"]) if p.get("source_record") else None,
                 "source_dataset": self.dataset if p.get("source_record") else None}
                for p in f["prototypes"]
            ]
        return {
            "record": public_name(record["record"]),
            "record_id": record["record_id"],
            "status": "ok",
            "html": html_name,
            "meta": dict(record.get("meta", {})),
            "format": ecg.format if ecg is not None else "",
            "labels_in_record": list(ecg.labels) if ecg is not None else [],
            "derived_leads": list(ecg.derived_leads) if ecg is not None else [],
            "measurements": measure(ecg.signal, ecg.fs).as_dict() if ecg is not None else None,
            "findings": findings,
        }

    def _leads(self, branch: str | None, window_s: tuple[float, float] | None, attr: np.ndarray | None) -> list[int]:
        """Leads shown for a prototype: II for rhythm, else the most attributed (1 whole-strip, 3 local)."""
        if branch == "rhythm":
            return [RHYTHM_LEAD]
        k = 1 if branch in WHOLE_STRIP_BRANCHES else 3
        if attr is None:
            return list(DEFAULT_LEADS[:k])
        a, b = (0, attr.shape[-1]) if window_s is None else (int(window_s[0] * self.ig_fs),
                                                                int(np.ceil(window_s[1] * self.ig_fs)))
        return attribution.top_leads(attr, a, max(b, a + 1), k=k)

    def _prototype_png(
        self, proto: Mapping[str, Any], ecg: ECGInput, attr: np.ndarray | None, sources: SourceLookup
    ) -> bytes:
        whole = proto.get("branch") in WHOLE_STRIP_BRANCHES
        win = proto.get("window") or {}
        window_s = None if whole or "start_s" not in win else (float(win["start_s"]), float(win["end_s"]))
        leads = self._leads(proto.get("branch"), window_s, attr)
        source = sources(str(proto["source_record"])) if proto.get("source_record") else None
        src_panel = None if source is None else Panel(
            source[0], source[1], f"Training ECG {public_name(proto['source_record'])}", window_s)
        patient = Panel(ecg.signal, ecg.fs, "This patient", window_s)
        plot = self.whole if whole else self.local
        return plot.render(src_panel, patient, leads)

    def images(
        self,
        data: Mapping[str, Any],
        ecg: ECGInput,
        attributions: Mapping[str, np.ndarray],
        sources: SourceLookup,
        record: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Data URIs of the report's figures: ``{"ecg", "attribution": {code}, "prototypes": {code: [..]}}``.

        ``record`` (the predictions entry) supplies the prototypes' full source keys for ``sources``;
        without it the (public) names in ``data`` are looked up.
        """
        full = {f["code"]: f["prototypes"] for f in sorted_findings(record)} if record is not None else {}
        note = "0.5 Hz high-pass; 3x4 layout, 2.5 s per column; lead II rhythm strip"
        out: dict[str, Any] = {
            "ecg": data_uri(self.twelve.render(ecg.signal, ecg.fs, note)),
            "attribution": {},
            "prototypes": {},
        }
        for f in data["findings"]:
            attr = attributions.get(f["code"])
            if attr is not None:
                smooth = max(1, round(ATTRIBUTION_SMOOTH_S * self.ig_fs))
                out["attribution"][f["code"]] = data_uri(self.strip.render(attr, smooth))
            out["prototypes"][f["code"]] = [
                data_uri(self._prototype_png(p, ecg, attr, sources)) for p in full.get(f["code"], f["prototypes"])
            ]
        return out

    def render_html(
        self, data: Mapping[str, Any], ecg: ECGInput, images: Mapping[str, Any], card: Mapping[str, Any] | None = None
    ) -> str:
        """The report page for one ECG (``card``: :func:`medcl.explain.model_card.model_card`)."""
        from medcl.explain.model_card import model_card

        return template_env().get_template("report.html.j2").render(
            rec=data,
            meta_rows=format_meta(data["meta"]),
            card=card if card is not None else model_card(None),
            comments=visible_comments(ecg.comments),
            images=images,
            leads=LEADS,
            intended_use=INTENDED_USE,
            generated=_now(),
        )


@functools.lru_cache(maxsize=1)
def default_renderer() -> ReportRenderer:
    """A process-wide renderer, so repeated batches reuse its figures (not thread-safe)."""
    return ReportRenderer()


def render_index(
    entries: Sequence[Mapping[str, Any]], title: str = "ECG prototype reports", card: Mapping[str, Any] | None = None
) -> str:
    """The batch index page: a sortable table of records, top findings, links and failures."""
    return template_env().get_template("index.html.j2").render(
        entries=entries, title=title, intended_use=INTENDED_USE, generated=_now(), card=card or {}
    )


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _failure(record: str, record_id: str, error: str) -> dict:
    """Index/JSON entry of a record whose report could not be produced."""
    return {"record": public_name(record), "record_id": public_name(record_id), "status": "error",
            "error": redact_paths(error), "meta": {}, "findings": []}


def _no_sources(_: str) -> None:
    return None


def write_report_batch(
    predictions: Mapping[str, Any],
    ecgs: Mapping[str, ECGInput],
    out_dir: str | Path,
    *,
    attributions: Mapping[tuple[str, str], np.ndarray] | None = None,
    sources: SourceLookup | None = None,
    failures: Sequence[Mapping[str, str]] = (),
    renderer: ReportRenderer | None = None,
    extra: Mapping[str, Any] | None = None,
    card: Mapping[str, Any] | None = None,
    progress: bool | None = None,
) -> Path:
    """Write ``<record>.html`` per ECG, ``index.html`` and ``report.json`` into ``out_dir``.

    Args:
        predictions: the predictions dict (DEVELOPING.md, "ECG predictions").
        ecgs: display signals keyed by the predictions' ``"record"`` value.
        out_dir: output folder (created).
        attributions: ``(record, code) -> (12, T)`` attributions at the model rate.
        sources: resolves prototype source records to signals (None: sources not shown).
        failures: records that failed earlier, ``{"record", "error"}``; listed in the index.
        renderer: the figure objects to draw with (default: :func:`default_renderer`).
        extra: additional top-level fields for ``report.json`` (checkpoint, versions).
        card: the model card (:func:`medcl.explain.model_card.model_card`; fallback when None).
        progress: a progress bar (None: only when stderr is a terminal).

    Returns:
        Path of ``index.html``. A record that fails to render is listed with its error.
    """
    from medcl.explain.model_card import model_card
    from medcl.utils import progress_bar

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    card = dict(card) if card is not None else model_card(None)
    renderer = renderer or default_renderer()
    renderer.dataset = card["dataset"]
    attributions = attributions or {}
    sources = sources or _no_sources
    taken = {"index", "report"}
    entries = [_failure(f["record"], Path(str(f["record"])).name, f["error"]) for f in failures]
    by_record: dict[str, dict[str, np.ndarray]] = {}
    for (rec, code), a in attributions.items():
        by_record.setdefault(rec, {})[code] = a
    for record in progress_bar(predictions.get("records", []), "reports", enable=progress):
        key = record["record"]
        try:
            if key not in ecgs:
                raise MedclError(f"{key}: no signal was given for this record")
            stem = safe_stem(record["record_id"], taken)
            attr = by_record.get(key, {})
            data = renderer.record_data(record, attr, f"{stem}.html", ecgs[key])
            images = renderer.images(data, ecgs[key], attr, sources, record)
            write_text(out / f"{stem}.html", renderer.render_html(data, ecgs[key], images, card))
            entries.append(data)
        except (ValueError, OSError) as exc:
            entries.append(_failure(key, record.get("record_id", key), str(exc)))
    write_json(out / "report.json", {
        "intended_use": INTENDED_USE,
        "labels": list(predictions.get("labels", [])),
        "thresholds": dict(predictions.get("thresholds", {})),
        "model_card": card,
        **{k: redact_paths(v) if isinstance(v, str) else v for k, v in dict(extra or {}).items()},
        "records": entries,
    })
    return write_text(out / "index.html", render_index(entries, card=card))
