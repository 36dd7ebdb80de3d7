"""``--dicom-seg``: the DICOM SEG of a real ProstateX series, read back with highdicom and pydicom.

The network is a stand-in that bands the scaled intensity into the four zones, so the label map
holds several zones on a real 384 x 384 x 19 series. The SEG's frames are compared with the
``_zones.nii.gz`` written beside it, resampled by SimpleITK onto the DICOM series as SimpleITK
reads it (an independent geometry path), voxel for voxel.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from medcl.errors import MedclError
from medcl.inferers.zones_segmenter import ZonesSegmenter
from medcl.pipelines.zones_segment import segment

hd = pytest.importorskip("highdicom")  # the dicom-seg extra (in the Makefile's EXTRAS)

SERIES = "mri/prostatex-dicom/ProstateX-0000/07-07-2011/4.000000-t2tsetra-00702"
SNOMED = {"PZ": "279706003", "TZ": "399384005", "DPU": "71553001", "AFS": "717025007"}


class IntensityBands(nn.Module):
    """Stand-in zones network: scaled intensity bands -> background, PZ, TZ, DPU, AFS (one-hot)."""

    def zone_probabilities(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        band = torch.bucketize(x[:, 0], torch.tensor([0.3, 0.45, 0.6, 0.75]))
        probs = torch.nn.functional.one_hot(band, 5).movedim(-1, 1).float()
        return probs, torch.zeros_like(x)


@pytest.fixture(scope="module")
def seg_run(shared_data, tmp_path_factory):
    series = shared_data / SERIES
    if not series.is_dir():
        pytest.skip("ProstateX DICOM series not available")
    out = tmp_path_factory.mktemp("dicom-seg")
    segmenter = ZonesSegmenter(net=IntensityBands(), tta=False, roi="center")
    rows = segment([series], segmenter, out, dicom_seg=True)
    assert rows[0]["status"] == "ok", rows[0]["error"]
    return series, out / f"{series.name}_zones.seg.dcm", out / f"{series.name}_zones.nii.gz"


def test_seg_segments_are_the_coded_zones(seg_run):
    _, seg_path, _ = seg_run
    seg = hd.seg.segread(seg_path)
    labels = [seg.get_segment_description(n).segment_label for n in seg.get_segment_numbers()]
    assert labels == ["PZ", "TZ", "DPU", "AFS"]
    for number, name in enumerate(labels, start=1):
        item = seg.SegmentSequence[number - 1]
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == SNOMED[name]
        assert item.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"  # anatomical structure
        assert item.SegmentAlgorithmType == "AUTOMATIC"


def test_seg_references_the_source_series(seg_run):
    series, seg_path, _ = seg_run
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(series.iterdir())]
    seg = pydicom.dcmread(seg_path)
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        s.SOPInstanceUID for s in sources}


def test_seg_frames_decode_to_the_nifti_label_map(seg_run):
    series, seg_path, nifti = seg_run
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(series))
    reader.SetFileNames(files)
    grid = reader.Execute()
    on_dicom = sitk.GetArrayFromImage(sitk.Resample(sitk.ReadImage(str(nifti)), grid, sitk.Transform(),
                                                    sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))
    assert len(np.unique(on_dicom)) >= 4  # several zones, so the comparison can fail
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    seg = hd.seg.segread(seg_path)
    decoded = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    assert decoded.shape == on_dicom.shape == (19, 384, 384)
    np.testing.assert_array_equal(decoded, on_dicom)


def test_dicom_seg_of_a_nifti_input_is_a_one_line_error(shared_data, tmp_path, capsys):
    from medcl.cli import main

    scan = shared_data / "mri" / "prostate158-sample" / "001" / "t2.nii.gz"
    if not scan.is_file():
        pytest.skip("Prostate158 scan not available")
    with pytest.raises(MedclError, match="--dicom-seg needs a DICOM series folder"):
        segment([scan], ZonesSegmenter(net=IntensityBands(), tta=False), tmp_path / "out", dicom_seg=True)
    code = main(["zones", "segment", str(scan), "--checkpoint", str(tmp_path / "none.ckpt"), "--out",
                 str(tmp_path / "cli"), "--dicom-seg"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--dicom-seg needs a DICOM series folder" in err[0]
    assert not any((tmp_path / "cli").glob("*zones*"))
