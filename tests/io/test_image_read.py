"""Reading real scans: geometry against known values and against independent readers (nibabel, DICOM tags)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import LoadImage, LoadImaged

from medcl.errors import MedclError
from medcl.io.image import SITKReader, list_dicom_series, read_image, read_sitk_image

torch.set_num_threads(1)

STUDY = "mri/prostatex-dicom/ProstateX-0000/07-07-2011"
SERIES = {
    "tra": f"{STUDY}/4.000000-t2tsetra-00702",
    "sag": f"{STUDY}/3.000000-t2tsesag-87368",
    "cor": f"{STUDY}/5.000000-t2tsecor-03471",
    "adc": f"{STUDY}/7.000000-ep2ddifftraDYNDISTADC-48780",
}
NRRD = "mri/prostatex-nrrd/ProstateX-0217/t2_tse_{}.nrrd"
MSD = "mri/msd-prostate-labels/prostate_{:02d}.nii"

# (path, size, spacing or None, orientation) from ../shared/data/README.md and the task statement.
KNOWN = [
    (SERIES["tra"], (384, 384, 19), (0.5, 0.5, 3.0), "LPS"),
    (SERIES["sag"], (320, 320, 19), None, "PIR"),
    (SERIES["cor"], (320, 320, 15), None, "LIP"),
    (SERIES["adc"], (84, 128, 19), (2.0, 2.0, 3.0), "LPS"),
    (NRRD.format("tra"), (320, 320, 23), (0.5625, 0.5625, 3.0), "LPS"),
    (NRRD.format("sag"), (320, 320, 19), None, "PIR"),
    (NRRD.format("cor"), (320, 320, 15), None, "LIP"),
    (MSD.format(0), (320, 320, 15), None, "RAS"),
    (MSD.format(1), (320, 320, 20), None, "RAS"),
]


@pytest.mark.parametrize(("rel", "size", "spacing", "orientation"), KNOWN, ids=[k[0].split("/")[-1] for k in KNOWN])
def test_real_scan_geometry_matches_known_values(shared_data, rel, size, spacing, orientation):
    image = read_image(shared_data / rel)
    assert tuple(image.shape) == (1, *size)
    assert image.dtype == torch.float32
    assert image.meta["filename_or_obj"] == str(shared_data / rel)
    if spacing is not None:
        np.testing.assert_allclose(image.pixdim.numpy(), spacing, atol=1e-5)
    # Orientation from the RAS affine (nibabel convention) matches the documented LPS-style code.
    assert "".join(nib.aff2axcodes(image.affine.numpy())) == orientation


@pytest.mark.parametrize("index", [0, 1])
def test_nifti_affine_matches_nibabel(shared_data, index):
    path = shared_data / MSD.format(index)
    image = read_image(path, dtype=None)
    reference = nib.load(path)
    np.testing.assert_allclose(image.affine.numpy(), reference.affine, atol=1e-4)
    assert image.dtype == torch.uint8
    np.testing.assert_array_equal(image[0].numpy(), np.asarray(reference.dataobj))
    assert set(np.unique(image.numpy())) <= {0, 1, 2}


def _dicom_tag(path: str, tag: str) -> list[float]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return [float(v) for v in reader.GetMetaData(tag).split("\\")]


@pytest.mark.parametrize("name", ["tra", "sag", "cor", "adc"])
def test_dicom_affine_matches_patient_tags(shared_data, name):
    """Affine rebuilt from ImagePositionPatient / ImageOrientationPatient / PixelSpacing (LPS -> RAS by hand)."""
    image = read_image(shared_data / SERIES[name])
    files = list_dicom_series(shared_data / SERIES[name])[0].files
    row, col = np.reshape(_dicom_tag(files[0], "0020|0037"), (2, 3))
    d_row, d_col = _dicom_tag(files[0], "0028|0030")  # row spacing (between rows), column spacing
    first, last = np.array(_dicom_tag(files[0], "0020|0032")), np.array(_dicom_tag(files[-1], "0020|0032"))
    slice_step = (last - first) / (len(files) - 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row * d_col, col * d_row, slice_step, first
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    np.testing.assert_allclose(image.affine.numpy(), ras, atol=1e-3)


def test_dicom_study_folder_lists_series_and_selects_by_description_or_uid(shared_data):
    study = shared_data / STUDY
    series = list_dicom_series(study)
    assert sorted(s.description for s in series) == sorted(
        ["t2_tse_tra", "t2_tse_sag", "t2_tse_cor", "ep2d_diff_tra_DYNDIST_ADC"]
    )
    with pytest.raises(MedclError, match=r"holds 4 DICOM series.*t2_tse_tra.*") as info:
        read_image(study)
    assert str(study) in str(info.value) and "\n" not in str(info.value)
    assert all(s.uid in str(info.value) for s in series)
    by_description = read_image(study, series="T2_TSE_COR")
    cor = next(s for s in series if s.description == "t2_tse_cor")
    by_uid = read_image(study, series=cor.uid)
    assert torch.equal(by_description, by_uid) and by_uid.shape == (1, 320, 320, 15)
    assert by_uid.meta["series_description"] == "t2_tse_cor" and by_uid.meta["series_uid"] == cor.uid
    with pytest.raises(MedclError, match="no DICOM series matches 'flair'"):
        read_image(study, series="flair")


def test_series_option_on_a_file_is_an_error(shared_data):
    with pytest.raises(MedclError, match="applies only to a DICOM folder"):
        read_sitk_image(shared_data / NRRD.format("tra"), series="t2")


def test_monai_loaders_use_the_reader(shared_data):
    path = str(shared_data / NRRD.format("tra"))
    direct = read_image(path)
    by_instance = LoadImaged("image", reader=SITKReader(), image_only=True, ensure_channel_first=True)({"image": path})
    by_name = LoadImage(reader="SITKReader", image_only=True, ensure_channel_first=True)(path)
    for other in (by_instance["image"], by_name):
        assert torch.equal(other, direct)
        np.testing.assert_allclose(other.affine.numpy(), direct.affine.numpy())


def test_several_files_stack_as_channels(shared_data):
    path = str(shared_data / NRRD.format("tra"))
    stacked = LoadImage(image_only=True, ensure_channel_first=True)([path, path], reader=SITKReader())
    assert stacked.shape == (2, 320, 320, 23)
    assert torch.equal(stacked[0], stacked[1])
    with pytest.raises(MedclError, match="geometry differs"):
        LoadImage(image_only=True)([path, str(shared_data / NRRD.format("sag"))], reader=SITKReader())
