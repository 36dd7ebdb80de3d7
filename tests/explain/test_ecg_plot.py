"""ECG paper geometry: grid spacing, true scale (25 mm/s, 10 mm/mV) and the standard layout."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from medcl.explain.ecg_plot import (
    GAIN_MM_MV,
    LAYOUT_3X4,
    MM_PER_INCH,
    SPEED_MM_S,
    ComparisonPlot,
    Panel,
    TwelveLeadPlot,
    paper_grid,
)
from medcl.io.ecg import LEADS

DPI = 254  # 10 pixels per millimetre: pixel positions are hand-computable


def _png(data: bytes) -> tuple[np.ndarray, tuple[float, float]]:
    image = Image.open(io.BytesIO(data))
    return np.asarray(image.convert("RGB")).astype(int), image.info["dpi"]


def test_grid_lines_every_mm_and_darker_every_5mm():
    img = paper_grid(30.0, 20.0, DPI).astype(int)
    assert img.shape == (200, 300, 3)
    row = img[15].sum(axis=1)  # 1.45-1.55 mm from the top: between horizontal lines
    lines = np.flatnonzero(row < row.max())
    # minor lines straddle the pixel boundaries at 10 px per mm: columns 9/10, 19/20, ...
    assert set(range(9, 300, 10)) <= set(lines) and set(range(10, 300, 10)) <= set(lines)
    assert all(c % 10 in (8, 9, 0, 1) for c in lines)
    major, minor = row[[49, 50, 99, 100]], row[[9, 10, 19, 20]]
    assert major.max() < minor.min()  # major lines (every 5 mm) are darker
    assert (img[15, 5] == (255, 243, 243)).all()  # pink paper between lines


def test_layout_places_each_lead_at_its_cell_with_true_gain_and_speed():
    fs = 100.0
    signal = np.repeat(np.arange(12, dtype=float)[:, None] * 0.1, 1000, axis=1)  # lead k = 0.1 k mV
    plot = TwelveLeadPlot(dpi=50)
    lay = plot.layout
    segs = plot.segments(signal, fs)
    for r, row in enumerate(LAYOUT_3X4):
        for c, name in enumerate(row):
            seg = segs[4 * r + c]
            k = LEADS.index(name)
            np.testing.assert_allclose(seg[:, 1], lay.baseline(r) + 0.1 * k * GAIN_MM_MV)
            assert seg[0, 0] == pytest.approx(lay.left + 2.5 * c * SPEED_MM_S)
            assert seg[1, 0] - seg[0, 0] == pytest.approx(SPEED_MM_S / fs)
    rhythm = segs[12]
    np.testing.assert_allclose(rhythm[:, 1], lay.baseline(3) + 0.1 * LEADS.index("II") * GAIN_MM_MV)
    assert rhythm[-1, 0] - rhythm[0, 0] == pytest.approx(999 / fs * SPEED_MM_S)


def test_rendered_png_is_true_scale_calibration_pulse_is_10mm():
    plot = TwelveLeadPlot(dpi=DPI)
    lay = plot.layout
    png, dpi = _png(plot.render(np.zeros((12, 1000)), 100.0))
    assert dpi == pytest.approx((DPI, DPI), abs=0.5)
    assert png.shape[:2] == (round(lay.height * DPI / MM_PER_INCH), round(lay.width * DPI / MM_PER_INCH))
    dark = png.sum(axis=-1) < 200
    # the pulse's rising edge is at x = 3 mm (pixel 30); rows of the top pulse lie above row 1's area
    top_row_px = slice(0, int((lay.height - lay.baseline(0) + 5) * 10))
    column = dark[top_row_px, 29:32].any(axis=1)
    assert column.sum() == pytest.approx(10 * GAIN_MM_MV, abs=4)  # 1 mV -> 10 mm -> 100 px


def test_trace_moves_10mm_per_mV_in_pixels():
    plot = TwelveLeadPlot(dpi=DPI)
    lay = plot.layout
    signal = np.zeros((12, 1000))
    signal[LEADS.index("II"), 500:] = 1.0  # 1 mV step at t = 5 s in the rhythm strip
    png, _ = _png(plot.render(signal, 100.0))
    dark = png.sum(axis=-1) < 200
    def trace_row(x_mm: float) -> float:
        col = dark[:, int(x_mm * 10)]
        rows = np.flatnonzero(col[int((lay.height - lay.baseline(3) - 15) * 10):]) + int((lay.height - lay.baseline(3) - 15) * 10)
        return rows.mean()
    before = trace_row(lay.left + 4.0 * SPEED_MM_S)
    after = trace_row(lay.left + 6.0 * SPEED_MM_S)
    assert before - after == pytest.approx(100, abs=3)


def test_comparison_excerpt_and_highlight():
    plot = ComparisonPlot(span_s=2.5, n_leads=3, dpi=DPI // 2)
    assert plot.excerpt((3.0, 3.6), 10.0) == pytest.approx((2.05, 4.55))
    assert plot.excerpt((9.8, 10.0), 10.0) == pytest.approx((7.5, 10.0))
    assert plot.excerpt(None, 10.0) == pytest.approx((0.0, 2.5))
    sig = np.zeros((12, 1000))
    png, _ = _png(plot.render(Panel(sig, 100.0, "src", (3.0, 3.6)), Panel(sig, 100.0, "patient", (3.0, 3.6)), [1, 6, 10]))
    blue = (png[..., 2] - png[..., 0]) > 20
    px_per_mm = DPI / 2 / MM_PER_INCH
    cols = np.flatnonzero(blue.any(axis=0)) / px_per_mm
    # window 3.0-3.6 s shown from 2.05 s: 23.75-38.75 mm after the panel's trace origin (9 mm)
    left_panel = cols[cols < plot.panel_w]
    assert left_panel.min() == pytest.approx(9.0 + 0.95 * SPEED_MM_S, abs=0.6)
    assert left_panel.max() == pytest.approx(9.0 + 1.55 * SPEED_MM_S, abs=0.6)
    right_panel = cols[cols >= plot.panel_w] - plot.panel_w
    assert right_panel.min() == pytest.approx(left_panel.min(), abs=0.3)


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match="12, n"):
        TwelveLeadPlot(dpi=50).segments(np.zeros((3, 100)), 100.0)
