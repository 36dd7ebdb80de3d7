"""Geometry round trips: oblique synthetic images in LPS/RAS/PIR/LIP and every real scan.

read -> canonical orientation + resample -> invert -> write must give the input grid back.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.spatial.transform import Rotation

from medcl.io.image import affine_to_sitk_geometry, read_image, read_sitk_image, sitk_affine, write_like
from medcl.transforms.geometry import DEFAULT_PIXDIM, invert_to_input, load_canonical, percentile_scale

torch.set_num_threads(1)

ORIENTATIONS = ["LPS", "RAS", "PIR", "LIP"]
SPACING = np.array([0.7, 0.9, 2.5])
SHAPE = (12, 10, 6)
LPS_FLIP = np.diag([-1.0, -1.0, 1.0])


def _oblique_affine(code: str) -> np.ndarray:
    """RAS affine whose axes point along ``code`` (e.g. ``"PIR"``), tilted by a few degrees."""
    ornt = nib.orientations.axcodes2ornt(tuple(code))
    axes = np.zeros((3, 3))
    for i, (world, flip) in enumerate(ornt):
        axes[int(world), i] = flip
    tilt = Rotation.from_euler("xyz", [9.0, -6.0, 4.0], degrees=True).as_matrix()
    affine = np.eye(4)
    affine[:3, :3] = tilt @ axes @ np.diag(SPACING)
    affine[:3, 3] = [-31.5, 12.25, 47.0]
    return affine


def _volume() -> np.ndarray:
    volume = np.random.default_rng(3).random(SHAPE).astype(np.float32) * 100
    volume[3:8, 2:7, 1:4] += 500  # a bright block, so orientation mistakes change the data
    return volume


def _write_nibabel(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(volume, affine), path)
    return path


def _write_sitk(path: Path, volume: np.ndarray, affine: np.ndarray) -> Path:
    """Geometry converted to LPS by hand, independently of medcl's conversion."""
    linear = LPS_FLIP @ affine[:3, :3]
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.T))
    image.SetSpacing(np.linalg.norm(linear, axis=0).tolist())
    image.SetDirection((linear / np.linalg.norm(linear, axis=0)).ravel().tolist())
    image.SetOrigin((LPS_FLIP @ affine[:3, 3]).tolist())
    sitk.WriteImage(image, str(path))
    return path


WRITERS = {"nibabel.nii.gz": _write_nibabel, "sitk.nii.gz": _write_sitk, "sitk.nrrd": _write_sitk, "sitk.mha": _write_sitk}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("code", ORIENTATIONS)
def test_oblique_read_matches_written_affine(tmp_path, code, writer):
    affine, volume = _oblique_affine(code), _volume()
    path = WRITERS[writer](tmp_path / f"scan.{writer.split('.', 1)[1]}", volume, affine)
    image = read_image(path)
    np.testing.assert_allclose(image.affine.numpy(), affine, atol=1e-5)
    np.testing.assert_allclose(image[0].numpy(), volume, rtol=1e-6)
    assert "".join(nib.aff2axcodes(image.affine.numpy())) == code
    sitk_image, _ = read_sitk_image(path)
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(sitk_image.GetDirection()) == code


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("code", ORIENTATIONS)
def test_write_like_preserves_oblique_geometry(tmp_path, code, suffix):
    affine, volume = _oblique_affine(code), _volume()
    reference = read_image(_write_sitk(tmp_path / "in.mha", volume, affine))
    out = write_like(reference * 2, reference, tmp_path / f"out{suffix}", dtype=np.float32)
    back = read_image(out)
    np.testing.assert_allclose(back.affine.numpy(), affine, atol=1e-4)
    np.testing.assert_allclose(back.numpy(), 2 * reference.numpy(), rtol=1e-6)
    if suffix.startswith(".nii"):
        header = nib.load(out).header
        assert int(header["sform_code"]) == 1 and int(header["qform_code"]) == 1
        np.testing.assert_allclose(header.get_qform(), affine, atol=1e-4)
        np.testing.assert_allclose(header.get_sform(), affine, atol=1e-4)
        np.testing.assert_allclose(header.get_zooms(), SPACING, atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_write_like_rejects_wrong_shape_and_keeps_no_partial_file(tmp_path):
    reference = read_image(_write_sitk(tmp_path / "in.mha", _volume(), _oblique_affine("LPS")))
    with pytest.raises(ValueError, match=r"out.nii.gz: array shape \(12, 10, 5\) does not match"):
        write_like(np.zeros((12, 10, 5)), reference, tmp_path / "out.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mha"]


def test_sitk_geometry_conversion_round_trip(tmp_path):
    image, _ = read_sitk_image(_write_sitk(tmp_path / "in.mha", _volume(), _oblique_affine("PIR")))
    spacing, direction, origin = affine_to_sitk_geometry(sitk_affine(image))
    np.testing.assert_allclose(spacing, image.GetSpacing(), atol=1e-12)
    np.testing.assert_allclose(direction, image.GetDirection(), atol=1e-12)
    np.testing.assert_allclose(origin, image.GetOrigin(), atol=1e-12)


def _canonical_and_back(path: Path, pixdim, label: bool = False) -> tuple:
    """Run the shared chain on ``path`` and invert a copy of its output back onto the input grid."""
    chain = load_canonical("image", pixdim=pixdim, mode="nearest" if label else "bilinear")
    item = chain({"image": str(path)})
    item["pred"] = item["image"].clone()
    inverted = invert_to_input("pred", chain, orig_keys="image", nearest_interp=label)(item)
    return item["image"], inverted["pred"]


@pytest.mark.parametrize("code", ORIENTATIONS)
def test_canonical_chain_and_inverse_on_oblique_images(tmp_path, code):
    affine, volume = _oblique_affine(code), _volume()
    path = _write_sitk(tmp_path / "in.nii.gz", volume, affine)
    canonical, back = _canonical_and_back(path, pixdim=(1.0, 1.0, 2.0))
    assert "".join(nib.aff2axcodes(canonical.affine.numpy())) == "RAS"
    np.testing.assert_allclose(canonical.pixdim.numpy(), [1.0, 1.0, 2.0], atol=1e-6)
    assert back.shape == (1, *SHAPE)
    np.testing.assert_allclose(back.affine.numpy(), affine, atol=1e-4)


@pytest.mark.parametrize("code", ORIENTATIONS)
def test_orientation_only_round_trip_keeps_labels_identical(tmp_path, code):
    labels = (np.random.default_rng(5).random(SHAPE) * 5).astype(np.uint8)
    path = _write_sitk(tmp_path / "labels.nii.gz", labels, _oblique_affine(code))
    canonical, back = _canonical_and_back(path, pixdim=None, label=True)
    assert "".join(nib.aff2axcodes(canonical.affine.numpy())) == "RAS"
    np.testing.assert_array_equal(back[0].numpy(), labels)
    # The canonical array is a pure axis permutation/flip of the input: same histogram.
    np.testing.assert_array_equal(np.bincount(canonical.numpy().astype(int).ravel()), np.bincount(labels.ravel()))


STUDY = "mri/prostatex-dicom/ProstateX-0000/07-07-2011"
REAL = [
    f"{STUDY}/4.000000-t2tsetra-00702",
    f"{STUDY}/3.000000-t2tsesag-87368",
    f"{STUDY}/5.000000-t2tsecor-03471",
    f"{STUDY}/7.000000-ep2ddifftraDYNDISTADC-48780",
    "mri/prostatex-nrrd/ProstateX-0217/t2_tse_tra.nrrd",
    "mri/prostatex-nrrd/ProstateX-0217/t2_tse_sag.nrrd",
    "mri/prostatex-nrrd/ProstateX-0217/t2_tse_cor.nrrd",
    "mri/msd-prostate-labels/prostate_00.nii",
    "mri/msd-prostate-labels/prostate_01.nii",
]


@pytest.mark.parametrize("rel", REAL, ids=[r.split("/")[-1] for r in REAL])
def test_real_scan_canonical_resample_invert_write_gives_input_grid(shared_data, tmp_path, rel):
    source = read_image(shared_data / rel)
    canonical, back = _canonical_and_back(shared_data / rel, pixdim=DEFAULT_PIXDIM)
    assert "".join(nib.aff2axcodes(canonical.affine.numpy())) == "RAS"
    np.testing.assert_allclose(canonical.pixdim.numpy(), DEFAULT_PIXDIM, atol=1e-4)  # MONAI keeps 2.999998
    out = write_like(back, source, tmp_path / "back.nii", dtype=np.float32)  # uncompressed: faster test
    written = read_image(out)
    assert written.shape == source.shape
    np.testing.assert_allclose(written.affine.numpy(), source.affine.numpy(), atol=1e-4)


@pytest.mark.parametrize("rel", ["mri/msd-prostate-labels/prostate_00.nii", "mri/msd-prostate-labels/prostate_01.nii"])
def test_real_label_maps_identical_after_nearest_round_trip(shared_data, tmp_path, rel):
    source = read_image(shared_data / rel, dtype=None)
    _, back = _canonical_and_back(shared_data / rel, pixdim=None, label=True)
    out = write_like(back, source, tmp_path / "labels.nii.gz", dtype=np.uint8)
    written = nib.load(out)
    np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(nib.load(shared_data / rel).dataobj))
    np.testing.assert_allclose(written.affine, nib.load(shared_data / rel).affine, atol=1e-4)


def test_real_dicom_labels_identical_after_reorientation(shared_data, tmp_path):
    """LPS T2 series: a thresholded mask survives RAS reorientation + inversion voxel for voxel."""
    series = shared_data / REAL[0]
    source = read_image(series)
    mask = (source[0] > torch.quantile(source[0].flatten()[::7], 0.9)).numpy().astype(np.uint8)
    mask_path = write_like(mask, source, tmp_path / "mask.nii.gz", dtype=np.uint8)
    _, back = _canonical_and_back(mask_path, pixdim=None, label=True)
    np.testing.assert_array_equal(back[0].numpy().astype(np.uint8), mask)


def test_image_and_label_keys_stay_aligned(tmp_path):
    affine, volume = _oblique_affine("PIR"), _volume()
    labels = (volume > 300).astype(np.uint8)
    image_path = _write_sitk(tmp_path / "image.nii.gz", volume, affine)
    label_path = _write_sitk(tmp_path / "label.nii.gz", labels, affine)
    chain = load_canonical(("image", "label"), pixdim=(0.5, 0.5, 1.25), mode=("bilinear", "nearest"))
    item = chain({"image": str(image_path), "label": str(label_path)})
    assert item["image"].shape == item["label"].shape
    np.testing.assert_allclose(item["image"].affine.numpy(), item["label"].affine.numpy())
    assert set(np.unique(item["label"].numpy())) == {0, 1}  # nearest keeps label values
    # Halving the spacing multiplies the block's voxel count by about 2 * 2 * 2 = 8.
    assert item["label"].sum().item() == pytest.approx(8 * labels.sum(), rel=0.3)


def test_percentile_scale_clips_to_unit_range():
    volume = torch.arange(1000, dtype=torch.float32).reshape(1, 10, 10, 10)
    scaled = percentile_scale("image", lower=1.0, upper=99.0)({"image": volume})["image"]
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    # np.percentile of 0..999: p1 = 9.99, p99 = 989.01 -> 500 maps to (500 - 9.99) / 979.02.
    assert scaled[0, 5, 0, 0].item() == pytest.approx((500 - 9.99) / 979.02, abs=1e-5)
    assert int((scaled == 0).sum()) == 10  # 0..9 are below p1
