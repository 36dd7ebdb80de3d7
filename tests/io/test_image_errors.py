"""The corrupted-input set: each bad file gives its documented one-line MedclError naming the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from monai.transforms import Compose

from medcl.errors import MedclError
from medcl.io.image import LoadScand, read_image
from medcl.transforms.geometry import load_canonical, unwrap_medcl_error


def _truncate(path: Path, out: Path, keep: float = 0.6) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def _nifti(path: Path, shape: tuple[int, ...], dtype=np.float32) -> Path:
    data = np.random.default_rng(0).random(shape).astype(dtype) if 0 not in shape else np.zeros(shape, dtype)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


def _sitk(path: Path, array: np.ndarray) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    return path


def _with_value(value: float) -> np.ndarray:
    array = np.random.default_rng(1).random((6, 7, 8)).astype(np.float32)
    array[2, 3, 4] = value
    array[0, 0, 0] = value
    return array


def _make(kind: str, tmp: Path) -> Path:
    makers = {
        "truncated_nii_gz": lambda: _truncate(_nifti(tmp / "ok.nii.gz", (8, 9, 10)), tmp / "cut.nii.gz"),
        "truncated_nii": lambda: _truncate(_nifti(tmp / "ok.nii", (8, 9, 10), np.int16), tmp / "cut.nii"),
        "truncated_nrrd": lambda: _truncate(_sitk(tmp / "ok.nrrd", _with_value(0.5)), tmp / "cut.nrrd"),
        "four_d": lambda: _nifti(tmp / "4d.nii.gz", (8, 9, 10, 3)),
        "two_d": lambda: _nifti(tmp / "2d.nii.gz", (8, 9)),
        "zero_sized": lambda: _nifti(tmp / "empty.nii.gz", (0, 9, 10)),
        "nan_nifti": lambda: _sitk(tmp / "nan.nii.gz", _with_value(np.nan)),
        "inf_mha": lambda: _sitk(tmp / "inf.mha", _with_value(np.inf)),
        "rgb": lambda: _sitk(tmp / "rgb.mha", np.zeros((4, 5, 6, 3), np.uint8)),
        "not_an_image": lambda: _write_text(tmp / "notes.nii.gz"),
        "missing": lambda: tmp / "absent.nii.gz",
    }
    return makers[kind]()


def _write_text(path: Path) -> Path:
    path.write_text("patient notes, not an image\n")
    return path


CASES = {
    "truncated_nii_gz": r"truncated or corrupt image data",
    "truncated_nii": r"truncated \(1075 of 1792 bytes\)",  # 352 header + 8*9*10*2; 60% kept
    "truncated_nrrd": r"truncated or corrupt image data",
    "four_d": r"is 4D with 3 channels \(size \(8, 9, 10, 3\)\); choose one with --channel / data.channel \(0-2\)",
    "two_d": r"has 2 dimensions .*expected a 3D image",
    "zero_sized": r"has zero size \(0, 9, 10\)",
    "nan_nifti": r"contains 2 NaN/Inf voxels",
    "inf_mha": r"contains 2 NaN/Inf voxels",
    "rgb": r"has 3 components per voxel; expected a scalar image",
    "not_an_image": r"not a readable image",
    "missing": r"no such file or folder",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_bad_input_gives_documented_error(tmp_path, kind):
    path = _make(kind, tmp_path)
    with pytest.raises(MedclError, match=CASES[kind]) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


@pytest.mark.parametrize("kind", ["nan_nifti", "four_d"])
def test_bad_input_error_survives_monai_loading_chain(tmp_path, kind):
    """MONAI's LoadImaged would fall back to nibabel (which reads NaNs); LoadScand must not."""
    path = _make(kind, tmp_path)
    with pytest.raises(RuntimeError) as info:  # plain MONAI Compose wraps every transform error
        Compose([LoadScand("image", image_only=True)])({"image": str(path)})
    assert isinstance(unwrap_medcl_error(info.value), MedclError)
    assert str(path) in str(unwrap_medcl_error(info.value))
    with pytest.raises(MedclError, match=CASES[kind]):
        load_canonical("image")({"image": str(path)})


def test_trailing_singleton_fourth_axis_is_a_3d_image(tmp_path):
    data = np.arange(8 * 9 * 10, dtype=np.int16).reshape(8, 9, 10, 1)
    affine = np.diag([0.7, 0.8, 2.5, 1.0])
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "t.nii.gz")
    image = read_image(tmp_path / "t.nii.gz", dtype=None)
    assert image.shape == (1, 8, 9, 10)
    np.testing.assert_array_equal(image[0].numpy(), data[..., 0])
    np.testing.assert_allclose(image.affine.numpy(), affine, atol=1e-6)


def test_channel_of_a_4d_image_is_read_and_a_bad_index_is_one_line(tmp_path):
    path = _make("four_d", tmp_path)
    raw = np.asarray(nib.load(path).dataobj)
    assert np.allclose(read_image(path, channel=2)[0].numpy(), raw[..., 2])
    with pytest.raises(MedclError, match=r"4d.nii.gz: channel 3 is out of range; the image has 3 channel\(s\)"):
        read_image(path, channel=3)
