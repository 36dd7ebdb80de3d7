"""ECG figures on true-scale ECG paper for the clinician reports (matplotlib, Agg, no pyplot).

Conventions of the printed 12-lead ECG: 25 mm/s, 10 mm/mV, 1 mm minor / 5 mm major grid on pink
paper, a 1 mV calibration pulse, the standard 3x4 layout (I-II-III / aVR-aVL-aVF / V1-V3 / V4-V6,
2.5 s per column) plus a 10 s lead-II rhythm strip. Every figure is sized in millimetres
(``figsize = mm / 25.4``) so an image printed at its physical size keeps the scale.

Speed: each figure kind keeps one :class:`PaperFigure` (figure, grid image and trace collection
made once); a new ECG only swaps the line segments and a few texts, traces are one
``LineCollection`` and the grid a cached RGB image computed with numpy.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

from medcl.io.ecg import LEADS

MM_PER_INCH = 25.4
SPEED_MM_S = 25.0
GAIN_MM_MV = 10.0
PAPER_RGB = (255, 243, 243)
MINOR_RGB = (249, 200, 200)
MAJOR_RGB = (236, 140, 140)
TRACE_COLOR = "#111111"
HIGHLIGHT_RGBA = (0.15, 0.45, 0.95, 0.22)
TEXT_DEFAULTS = {"fontsize": 7, "fontweight": "normal", "fontstyle": "normal", "va": "baseline", "ha": "left"}
LAYOUT_3X4: tuple[tuple[str, ...], ...] = (
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
"""Rows of the standard 12-lead printout; column ``c`` shows seconds ``2.5 c`` to ``2.5 (c + 1)``."""


@functools.lru_cache(maxsize=16)
def paper_grid(width_mm: float, height_mm: float, dpi: int) -> np.ndarray:
    """Pink ECG paper as an ``(H, W, 3)`` uint8 image at ``dpi`` (1 mm minor, 5 mm major lines).

    Lines sit on whole millimetres counted from the bottom-left corner, so traces drawn in
    millimetre coordinates line up with them. Computed once per size (vectorised, cached).
    """
    px_per_mm = dpi / MM_PER_INCH
    w, h = round(width_mm * px_per_mm), round(height_mm * px_per_mm)
    x_mm = (np.arange(w) + 0.5) / px_per_mm
    y_mm = height_mm - (np.arange(h) + 0.5) / px_per_mm

    def coverage(v: np.ndarray, step: float, width_px: float) -> np.ndarray:
        """Anti-aliased line coverage in [0, 1] of pixels at ``v`` mm, lines every ``step`` mm."""
        dist_px = np.abs(v - step * np.round(v / step)) * px_per_mm
        return np.clip(width_px / 2 + 0.5 - dist_px, 0.0, 1.0)

    minor = np.maximum(coverage(y_mm, 1.0, 0.8)[:, None], coverage(x_mm, 1.0, 0.8)[None, :])
    major = np.maximum(coverage(y_mm, 5.0, 1.4)[:, None], coverage(x_mm, 5.0, 1.4)[None, :])
    paper, fine, bold = (np.asarray(c, float) for c in (PAPER_RGB, MINOR_RGB, MAJOR_RGB))
    rgb = paper + minor[..., None] * (fine - paper)
    rgb += major[..., None] * (bold - rgb)
    img = np.round(rgb).astype(np.uint8)
    img.flags.writeable = False
    return img


def calibration_pulse(x0: float, y0: float) -> np.ndarray:
    """The 1 mV, 0.2 s calibration pulse as a ``(6, 2)`` polyline in mm starting at ``(x0, y0)``."""
    w = 0.2 * SPEED_MM_S
    h = 1.0 * GAIN_MM_MV
    return np.array([[0, 0], [1, 0], [1, h], [1 + w, h], [1 + w, 0], [2 + w, 0]], float) + (x0, y0)


def trace(values: np.ndarray, fs: float, x0: float, y0: float, t0: float = 0.0) -> np.ndarray:
    """Polylines in mm for traces ``(..., n)`` in mV sampled at ``fs``: shape ``(..., n, 2)``.

    Sample ``k`` sits at ``x0 + (t0 + k / fs) * 25`` mm and ``y0 + v * 10`` mm (``y0`` may be an
    array broadcasting against ``values[..., :1]`` for one baseline per trace).
    """
    x = x0 + (t0 + np.arange(values.shape[-1]) / fs) * SPEED_MM_S
    y = np.asarray(y0, float) + values * GAIN_MM_MV
    return np.stack(np.broadcast_arrays(x, y), axis=-1)


class PaperFigure:
    """A reusable figure in millimetre coordinates over ECG paper.

    Args:
        width_mm: figure width in mm (also its printed width).
        height_mm: figure height in mm.
        dpi: raster resolution of the PNG.
        linewidth: trace width in points.
    """

    def __init__(self, width_mm: float, height_mm: float, dpi: int, linewidth: float = 0.7) -> None:
        self.size_mm = (width_mm, height_mm)
        self.dpi = dpi
        self.fig = Figure(figsize=(width_mm / MM_PER_INCH, height_mm / MM_PER_INCH), dpi=dpi)
        FigureCanvasAgg(self.fig)
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_axis_off()
        self.ax.imshow(
            paper_grid(width_mm, height_mm, dpi),
            extent=(0, width_mm, 0, height_mm),
            interpolation="nearest",
            aspect="auto",
        )
        self.ax.set_xlim(0, width_mm)
        self.ax.set_ylim(0, height_mm)
        self.spans = PolyCollection([], facecolors=[HIGHLIGHT_RGBA], edgecolors="none", zorder=2)
        self.lines = LineCollection([], colors=TRACE_COLOR, linewidths=linewidth, zorder=3)
        self.lines.set_joinstyle("round")
        self.ax.add_collection(self.spans)
        self.ax.add_collection(self.lines)
        self._texts: list = []
        self.fig.canvas.draw()  # grid only: cached once, restored before each render
        self._background = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def update(
        self,
        segments: Sequence[np.ndarray],
        texts: Sequence[tuple[float, float, str, dict]] = (),
        spans: Sequence[tuple[float, float, float, float]] = (),
    ) -> None:
        """Replace traces, texts ``(x, y, s, kwargs)`` and highlight boxes ``(x0, x1, y0, y1)``."""
        self.lines.set_segments(list(segments))
        self.spans.set_verts([[(a, c), (b, c), (b, d), (a, d)] for a, b, c, d in spans])
        while len(self._texts) < len(texts):  # text artists are pooled: creating them is slow
            self._texts.append(self.ax.text(0, 0, "", zorder=4))
        for artist, (x, y, s, kw) in zip(self._texts, texts):
            artist.update({**TEXT_DEFAULTS, **kw, "x": x, "y": y, "text": s, "visible": True})
        for artist in self._texts[len(texts):]:
            artist.set_visible(False)

    def png(self) -> bytes:
        """Render the current content over the cached grid (blitting) and encode it as PNG."""
        canvas = self.fig.canvas
        canvas.restore_region(self._background)
        for artist in (self.spans, self.lines, *self._texts):
            self.ax.draw_artist(artist)
        return encode_png(np.asarray(canvas.buffer_rgba())[..., :3], self.dpi, colors=48)


def encode_png(rgb: np.ndarray, dpi: float, colors: int | None = None) -> bytes:
    """PNG bytes of an ``(H, W, 3)`` uint8 image with its physical resolution (pHYs) set.

    Args:
        colors: quantise to a palette of this many colours (fast octree; ECG paper needs few,
            which makes the file ~4x smaller and the encoding faster); None keeps RGB.
    """
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(rgb))
    if colors is not None:
        image = image.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=3, dpi=(dpi, dpi))
    return buf.getvalue()


@dataclass(frozen=True)
class TwelveLeadLayout:
    """Geometry (mm) of the 3x4 + rhythm-strip printout."""

    left: float = 12.0
    right: float = 4.0
    top: float = 4.0
    bottom: float = 7.0
    row_pitch: float = 33.0
    duration_s: float = 10.0

    @property
    def width(self) -> float:
        return self.left + self.duration_s * SPEED_MM_S + self.right

    @property
    def height(self) -> float:
        return self.top + 4 * self.row_pitch + self.bottom

    def baseline(self, row: int | np.ndarray) -> np.ndarray:
        """Baseline height (mm) of row 0..3 (row 3 = rhythm strip), half a row below its top."""
        return self.height - self.top - (np.asarray(row) + 0.55) * self.row_pitch


_LEAD_POS = {name: i for i, name in enumerate(LEADS)}


class TwelveLeadPlot:
    """Renders 12-lead ECGs in the standard layout on one reused :class:`PaperFigure`.

    Args:
        dpi: PNG resolution (200 keeps 1 mm = 7.9 px, good for print and screen).
        layout: the printout geometry.
    """

    def __init__(self, dpi: int = 200, layout: TwelveLeadLayout | None = None) -> None:
        self.layout = layout or TwelveLeadLayout()
        self.paper = PaperFigure(self.layout.width, self.layout.height, dpi)

    def segments(self, signal: np.ndarray, fs: float) -> list[np.ndarray]:
        """Polylines (mm) of the 12 layout cells, the lead-II rhythm strip and 4 calibration pulses."""
        lay = self.layout
        n = int(round(lay.duration_s * fs))
        sig = _fit(signal, n)
        q = n // 4
        idx = np.array([[_LEAD_POS[name] for name in row] for row in LAYOUT_3X4])  # (3, 4)
        cols = np.broadcast_to(np.arange(4), idx.shape)
        cells = sig[:, : 4 * q].reshape(12, 4, q)[idx, cols]  # (3, 4, q)
        t0 = (cols * q / fs)[..., None]
        x = lay.left + (t0 + np.arange(q) / fs) * SPEED_MM_S
        y = lay.baseline(np.arange(3))[:, None, None] + cells * GAIN_MM_MV
        grid = np.stack(np.broadcast_arrays(x, y), axis=-1).reshape(12, q, 2)
        rhythm = trace(sig[_LEAD_POS["II"]], fs, lay.left, lay.baseline(3))
        pulses = [calibration_pulse(2.0, float(b)) for b in lay.baseline(np.arange(4))]
        ticks = [np.array([[x, b - 3], [x, b + 3]]) for x in lay.left + SPEED_MM_S * 2.5 * np.arange(1, 4)
                 for b in lay.baseline(np.arange(3))]
        return [*grid, rhythm, *pulses, *ticks]

    def texts(self, fs: float, note: str) -> list[tuple[float, float, str, dict]]:
        """Lead names at the top-left of each cell, the rhythm strip label and the scale footer."""
        lay = self.layout
        out = [
            (lay.left + 2.5 * SPEED_MM_S * c + 1.0, float(lay.baseline(r)) + 0.42 * lay.row_pitch, name,
             {"fontweight": "bold", "va": "top"})
            for r, row in enumerate(LAYOUT_3X4) for c, name in enumerate(row)
        ]
        out.append((lay.left + 1.0, float(lay.baseline(3)) + 0.42 * lay.row_pitch, "II (rhythm)",
                    {"fontweight": "bold", "va": "top"}))
        footer = f"25 mm/s   10 mm/mV   {fs:g} Hz   {note}".strip()
        out.append((lay.left, 2.0, footer, {"fontsize": 6.5, "va": "bottom"}))
        return out

    def render(self, signal: np.ndarray, fs: float, note: str = "") -> bytes:
        """PNG of ``signal`` ``(12, n)`` mV at ``fs`` Hz (cropped/zero-padded to 10 s)."""
        self.paper.update(self.segments(signal, fs), self.texts(fs, note))
        return self.paper.png()


@dataclass(frozen=True)
class Panel:
    """One side of a prototype comparison: a few leads of one ECG over a time range.

    Attributes:
        signal: ``(12, n)`` mV.
        fs: sampling rate of ``signal``.
        title: caption above the panel (plain text).
        window_s: the highlighted time window ``(start, end)`` in seconds, or None for none.
    """

    signal: np.ndarray
    fs: float
    title: str
    window_s: tuple[float, float] | None


class ComparisonPlot:
    """Side-by-side panels (prototype source | patient) at true scale with the window highlighted.

    Local (morphology) prototypes get ``span_s``-second excerpts centred on the window;
    rhythm/global prototypes use ``span_s = 10`` (the whole strip).

    Args:
        span_s: seconds shown per panel.
        n_leads: number of leads stacked per panel.
        dpi: PNG resolution.
        side_by_side: panels left/right (True) or stacked (False, used for whole strips).
    """

    def __init__(self, span_s: float, n_leads: int = 3, dpi: int = 130, side_by_side: bool = True) -> None:
        self.span_s, self.n_leads, self.side_by_side = span_s, n_leads, side_by_side
        self.pitch, self.head, self.margin = 17.0, 7.0, 9.0
        self.panel_w = self.margin + span_s * SPEED_MM_S + 2.0
        self.panel_h = self.head + n_leads * self.pitch
        width = 2 * self.panel_w if side_by_side else self.panel_w
        height = self.panel_h if side_by_side else 2 * self.panel_h
        self.paper = PaperFigure(width, height + 1.0, dpi, linewidth=0.6)

    def excerpt(self, window_s: tuple[float, float] | None, duration_s: float) -> tuple[float, float]:
        """The shown time range: ``span_s`` seconds centred on the window, kept inside the record."""
        if window_s is None or self.span_s >= duration_s:
            return 0.0, min(self.span_s, duration_s)
        centre = 0.5 * (window_s[0] + window_s[1])
        start = float(np.clip(centre - self.span_s / 2, 0.0, duration_s - self.span_s))
        return start, start + self.span_s

    def _panel(self, panel: Panel, leads: Sequence[int], origin: tuple[float, float]) -> tuple[list, list, list]:
        x0, top = origin
        duration = panel.signal.shape[-1] / panel.fs
        t_start, t_end = self.excerpt(panel.window_s, duration)
        k0, k1 = int(round(t_start * panel.fs)), int(round(t_end * panel.fs))
        base = top - self.head - (np.arange(len(leads)) + 0.5) * self.pitch
        xs = x0 + self.margin
        segs = list(trace(panel.signal[list(leads), k0:k1], panel.fs, xs, base[:, None]))
        segs += [calibration_pulse(x0 + 1.5, float(b)) for b in base]
        title = panel.title if len(panel.title) <= 48 else panel.title[:47] + "\u2026"
        texts = [(x0 + 1.5, top - 1.0, title, {"va": "top", "fontsize": 6.5, "fontweight": "bold"})]
        texts += [(xs + 0.5, float(b) + 0.42 * self.pitch, LEADS[i], {"va": "top", "fontweight": "bold"})
                  for i, b in zip(leads, base)]
        spans = []
        if panel.window_s is not None:
            a, b = (np.clip(panel.window_s, t_start, t_end) - t_start) * SPEED_MM_S + xs
            spans.append((float(a), float(b), top - self.panel_h, top - self.head + 0.5))
        return segs, texts, spans

    def render(self, source: Panel | None, patient: Panel, leads: Sequence[int]) -> bytes:
        """PNG comparing ``source`` (None: not available) with ``patient`` on ``leads``."""
        h = self.paper.size_mm[1]
        origins = [(0.0, h), (self.panel_w, h)] if self.side_by_side else [(0.0, h), (0.0, h - self.panel_h)]
        segs, texts, spans = self._panel(patient, leads, origins[1])
        if source is not None:
            s2, t2, p2 = self._panel(source, leads, origins[0])
            segs, texts, spans = s2 + segs, t2 + texts, p2 + spans
        else:
            x, top = origins[0]
            texts.append((x + 4.0, top - self.panel_h / 2, "source ECG not stored with the model",
                          {"fontsize": 8, "fontstyle": "italic"}))
        self.paper.update(segs, texts, spans)
        return self.paper.png()


class AttributionStrip:
    """A 12 x T heat strip of attributions (signed, symmetric colour scale), time-aligned at 25 mm/s.

    Args:
        duration_s: seconds on the time axis.
        dpi: PNG resolution.
    """

    def __init__(self, duration_s: float = 10.0, dpi: int = 110) -> None:
        width_mm = 14.0 + duration_s * SPEED_MM_S + 18.0
        height_mm = 12 * 3.6 + 10.0
        self.fig = Figure(figsize=(width_mm / MM_PER_INCH, height_mm / MM_PER_INCH), dpi=dpi)
        FigureCanvasAgg(self.fig)
        ax = self.fig.add_axes((14.0 / width_mm, 8.0 / height_mm, duration_s * SPEED_MM_S / width_mm,
                                1 - 10.0 / height_mm))
        self.image = ax.imshow(np.zeros((12, 2)), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                               interpolation="nearest", extent=(0, duration_s, 11.5, -0.5), animated=True)
        ax.set_yticks(range(12), LEADS, fontsize=6)
        ax.tick_params(axis="x", labelsize=6, length=2, pad=1)
        ax.tick_params(axis="y", length=0, pad=1)
        ax.set_xlabel("time (s)", fontsize=6, labelpad=1)
        cax = self.fig.add_axes((1 - 15.0 / width_mm, 8.0 / height_mm, 2.5 / width_mm, 1 - 10.0 / height_mm))
        bar = self.fig.colorbar(self.image, cax=cax, ticks=[-1, 0, 1])
        bar.ax.set_yticklabels(["against", "0", "for"], fontsize=5.5)
        bar.ax.tick_params(length=1.5, pad=1)
        self.dpi = dpi
        self.ax = ax
        self.fig.canvas.draw()  # axes, ticks and colour bar once; the animated heat map is blitted
        self._background = self.fig.canvas.copy_from_bbox(self.fig.bbox)

    def render(self, attribution: np.ndarray, smooth: int = 1) -> bytes:
        """PNG of ``attribution`` ``(12, T)`` scaled by its largest absolute value.

        Args:
            smooth: width in samples of a moving average along time (display only; 1 = none).
        """
        from scipy.ndimage import uniform_filter1d

        shown = uniform_filter1d(np.asarray(attribution, float), size=max(1, smooth), axis=-1, mode="nearest")
        scale = float(np.abs(shown).max()) or 1.0
        self.image.set_data(shown / scale)
        self.fig.canvas.restore_region(self._background)
        self.ax.draw_artist(self.image)
        return encode_png(np.asarray(self.fig.canvas.buffer_rgba())[..., :3], self.dpi)


def _fit(signal: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``(12, m)`` to ``(12, n)`` for display."""
    sig = np.asarray(signal, dtype=float)
    if sig.ndim != 2 or sig.shape[0] != 12:
        raise ValueError(f"expected a (12, n) signal, got shape {sig.shape}")
    return sig[:, :n] if sig.shape[1] >= n else np.pad(sig, ((0, 0), (0, n - sig.shape[1])))
