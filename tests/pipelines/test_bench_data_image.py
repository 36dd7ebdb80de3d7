"""The image I/O benchmark returns per-scan timings for the documented 384x384x19 canonical resample."""

from __future__ import annotations

import torch

from medcl.pipelines.bench.data_image import bench_image_io

torch.set_num_threads(1)


def test_bench_on_synthetic_scan(tmp_path):
    result = bench_image_io(repeats=1, data_root=tmp_path / "absent")
    assert result["source"] == "synthetic" and "dicom_read_ms" not in result
    # 384 x 384 x 19 at 0.5 x 0.5 x 3 mm in LPS: reorienting to RAS and resampling keeps the grid size.
    assert result["input_shape"] == [384, 384, 19] and result["output_shape"] == [384, 384, 19]
    assert result["nifti_canonical_ms"] > 0 and result["nifti_read_ms"] > 0
    assert result["peak_rss_mb"] > 50
