"""Medical image I/O: NIfTI, NRRD, MHA/MHD and DICOM series via SimpleITK into MONAI ``MetaTensor``.

SimpleITK reports geometry in LPS (ITK/DICOM convention); MONAI and NIfTI use RAS affines. The
conversion happens in exactly one place, :func:`sitk_affine` (and its inverse
:func:`affine_to_sitk_geometry` for writing non-NIfTI formats), through MONAI's
``orientation_ras_lps``. Every reader path validates its input and raises
:class:`~medcl.errors.MedclError` with one line naming the file and the problem.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import ImageReader, MetaTensor
from monai.data.utils import orientation_ras_lps
from monai.transforms import LoadImage, LoadImaged
from monai.transforms.io.array import SUPPORTED_READERS
from monai.utils import ensure_tuple

from medcl.errors import MedclError
from medcl.utils import atomic_write_path

__all__ = [
    "IMAGE_SUFFIXES",
    "DicomSeries",
    "LoadScand",
    "SITKReader",
    "affine_to_sitk_geometry",
    "allow_nonuniform_slices",
    "check_not_constant",
    "check_spacing",
    "inspect_image",
    "is_image_path",
    "list_dicom_series",
    "read_header",
    "read_image",
    "read_sitk_image",
    "sitk_affine",
    "write_like",
]

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ORTHOGONAL_TOL = 1e-3
"""Largest cosine between two voxel axes still called perpendicular (0.06 degrees off)."""
QSFORM_TOL = 1e-3
"""Largest difference of a qform and an sform axis entry (mm per voxel) still called agreeing."""
QSFORM_SHIFT_MM = 0.01
"""Largest distance between the qform and the sform origin still called agreeing."""
_DESCRIPTION_TAG = "0008|103e"
MIN_SPACING_MM = 1e-4
MAX_SPACING_MM = 100.0
"""Voxel spacing outside this range (mm) is a broken header, never a real scan."""
CONSTANT_RELATIVE_RANGE = 1e-4
"""An image whose intensity range is below this fraction of its largest magnitude is (near-)constant."""
_ITK_PREFIX = re.compile(r"^.*?ERROR:\s*(\w+\(0x[0-9a-fA-F]+\):\s*)?")


# --------------------------------------------------------------------------------------- geometry


def sitk_affine(image: sitk.Image) -> np.ndarray:
    """Return the 4x4 RAS voxel-to-world affine of a 3D SimpleITK image (the one LPS->RAS step)."""
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return orientation_ras_lps(affine)


def affine_to_sitk_geometry(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """Split a 4x4 RAS affine into SimpleITK ``(spacing, direction, origin)`` (LPS), inverse of `sitk_affine`."""
    lps = orientation_ras_lps(np.asarray(affine, dtype=np.float64))
    linear = lps[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    direction = linear / spacing
    return tuple(spacing.tolist()), tuple(direction.ravel().tolist()), tuple(lps[:3, 3].tolist())


def orientation_code(image: sitk.Image) -> str:
    """Three-letter orientation (e.g. ``"LPS"``) of the image axes, as SimpleITK/DICOM name it."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


# --------------------------------------------------------------------------------------- DICOM


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series found in a folder: its UID, description (tag 0008|103e) and sorted files."""

    uid: str
    description: str
    files: tuple[str, ...]

    def label(self) -> str:
        """Short human-readable identification used in error messages."""
        return f"{self.uid} ({self.description!r}, {len(self.files)} files)"


def _series_description(first_file: str) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(first_file)
    reader.LoadPrivateTagsOn()
    reader.ReadImageInformation()
    return reader.GetMetaData(_DESCRIPTION_TAG).strip() if reader.HasMetaDataKey(_DESCRIPTION_TAG) else ""


def list_dicom_series(folder: str | os.PathLike) -> list[DicomSeries]:
    """List the DICOM series in ``folder`` and its sub-folders (GDCM series UIDs, sorted slices)."""
    with native_stderr_swallowed():  # GDCM/OpenJPEG print their own lines ("Expected a SOC marker")
        return _list_dicom_series(folder)


def _list_dicom_series(folder: str | os.PathLike) -> list[DicomSeries]:
    root = Path(folder)
    if not root.is_dir():
        raise MedclError(f"{folder}: not a folder")
    found = []
    seen: set[str] = set()  # real folders: a symlink loop or a second link to a folder is read once
    for sub in sorted([root, *(p for p in root.rglob("*") if p.is_dir())]):
        real = os.path.realpath(sub)
        if real in seen or not any(child.is_file() for child in sub.iterdir()):
            continue
        seen.add(real)
        with _itk_warnings_off():  # GDCM prints a multi-line WARNING for a folder without DICOM files
            uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(sub))
        for uid in uids:
            files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(sub), uid))
            found.append(DicomSeries(uid, _series_description(files[0]), files))
    return found


@contextlib.contextmanager
def _itk_warnings_off() -> Iterator[None]:
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def choose_series(folder: str | os.PathLike, series: str | None = None) -> DicomSeries:
    """Pick one series of ``folder`` by UID or description (case-insensitive); the only one if ``None``."""
    available = list_dicom_series(folder)
    if not available:
        what = "is empty" if not any(Path(folder).iterdir()) else "holds no DICOM series"
        raise MedclError(f"{folder}: folder {what} (expected a DICOM series, or NIfTI/NRRD/MHA files directly in it)")
    if series is None:
        matches = available
    else:
        wanted = series.strip().lower()
        matches = [s for s in available if wanted in (s.uid.lower(), s.description.lower())]
    if len(matches) == 1:
        return matches[0]
    listing = "; ".join(s.label() for s in available)
    if not matches:
        raise MedclError(f"{folder}: no DICOM series matches {series!r}; available: {listing}")
    problem = f"holds {len(matches)} DICOM series" if series is None else f"{series!r} is ambiguous"
    raise MedclError(f"{folder}: {problem}; choose one by UID or description: {listing}")


_NONUNIFORM = [False]  # process-wide, not a ContextVar: MONAI's cache and loader threads must see it


@contextlib.contextmanager
def allow_nonuniform_slices(allow: bool = True) -> Iterator[None]:
    """Within the block, DICOM series with missing slices or uneven slice spacing are resampled onto a
    uniform grid (linear interpolation between the stored slices) instead of refused (``--allow-nonuniform``).

    The switch is process-wide (threads and forked loader workers started inside the block see it)."""
    previous, _NONUNIFORM[0] = _NONUNIFORM[0], bool(allow)
    try:
        yield
    finally:
        _NONUNIFORM[0] = previous


def _slice_offsets(image: sitk.Image, files: Sequence[str]) -> tuple[np.ndarray, float]:
    """Position of each file's slice along the slice normal (mm from the first), from the DICOM headers, and
    the largest sideways distance (mm) of a slice origin from the line through the first along the normal."""
    origin = np.asarray(image.GetOrigin())
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    normal = np.cross(direction[:, 0], direction[:, 1])  # from the rows/columns, as DICOM defines it
    normal *= np.sign(np.dot(normal, direction[:, 2])) or 1.0
    offsets, drift = [], 0.0
    for f in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(f)
        reader.ReadImageInformation()
        delta = np.asarray(reader.GetOrigin()) - origin
        offsets.append(float(np.dot(delta, normal)))
        drift = max(drift, float(np.linalg.norm(delta - offsets[-1] * normal)))
    return np.asarray(offsets), drift


def _unreadable_files(folder: Path, used: Sequence[str]) -> list[str]:
    """``.dcm`` files beside the series' files that belong to no series (truncated or corrupt)."""
    used_set = {Path(f).resolve() for f in used}
    bad = []
    for f in sorted({Path(u).parent for u in used}):
        for candidate in f.glob("*.dcm"):
            if candidate.resolve() in used_set:
                continue
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(candidate))
            try:
                reader.ReadImageInformation()
            except RuntimeError:
                bad.append(candidate.name)
    return bad


def _uniform_slices(folder: Path, image: sitk.Image, files: Sequence[str]) -> sitk.Image:
    """The series on uniformly spaced slices; a gap or uneven spacing is an error unless allowed."""
    if len(files) < 2:
        return image
    offsets, drift = _slice_offsets(image, files)
    if drift > 0.1 * min(image.GetSpacing()[:2]):
        raise MedclError(f"{folder}: slice positions drift {drift:.3g} mm sideways from the slice normal (a sheared or "
                         "gantry-tilted series); medcl reads only slices stacked along their normal")
    steps = np.diff(offsets)
    step = float(np.median(steps))
    unreadable = _unreadable_files(folder, files)
    uneven = step <= 0 or bool(np.any(np.abs(steps - step) > max(0.01 * abs(step), 1e-3)))
    if not uneven and not unreadable:
        return image
    if not uneven:
        raise MedclError(f"{folder}: DICOM slice file(s) {', '.join(unreadable)} are truncated or unreadable; "
                         "the series would have a missing slice")
    where = int(np.argmax(np.abs(steps - step)))
    problem = (f"slice spacing is not uniform ({steps.min():.4g} to {steps.max():.4g} mm, median {step:.4g} mm; "
               f"between slices {where + 1} and {where + 2})")
    if steps.max() > 1.5 * step:
        problem += "; a slice is missing" + (f" ({', '.join(unreadable)} unreadable)" if unreadable else "")
    if not _NONUNIFORM[0]:
        raise MedclError(f"{folder}: {problem}; use --allow-nonuniform to resample onto uniform slices")
    if step <= 0:
        raise MedclError(f"{folder}: {problem}; slices overlap, cannot resample")
    return _resample_slices(image, offsets, step)


def _resample_slices(image: sitk.Image, offsets: np.ndarray, step: float) -> sitk.Image:
    """Linear interpolation of the stored slices (at ``offsets`` mm) onto slices every ``step`` mm."""
    voxels = sitk.GetArrayFromImage(image).astype(np.float32)  # (z, y, x)
    n = int(round((offsets[-1] - offsets[0]) / step)) + 1
    target = offsets[0] + step * np.arange(n)
    upper = np.clip(np.searchsorted(offsets, target, side="right"), 1, len(offsets) - 1)
    w = ((target - offsets[upper - 1]) / (offsets[upper] - offsets[upper - 1])).clip(0, 1)[:, None, None]
    out = sitk.GetImageFromArray(voxels[upper - 1] * (1 - w) + voxels[upper] * w)
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    out.SetSpacing((*image.GetSpacing()[:2], step))
    return out


def _read_dicom_series(folder: Path, series: str | None) -> tuple[sitk.Image, dict[str, Any]]:
    with native_stderr_swallowed():  # GDCM/OpenJPEG print their own lines ("Expected a SOC marker")
        return _read_dicom_series_quietly(folder, series)


def _read_dicom_series_quietly(folder: Path, series: str | None) -> tuple[sitk.Image, dict[str, Any]]:
    chosen = choose_series(folder, series)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(chosen.files)
    image = _execute(reader, folder)
    if image.GetDimension() == 3:
        uniform = _uniform_slices(folder, image, chosen.files)
        extra = {"resampled_slices": uniform is not image}
        image = uniform
    else:
        extra = {}
    return image, {"series_uid": chosen.uid, "series_description": chosen.description, **extra}


# --------------------------------------------------------------------------------------- files


def _first_line(error: Exception) -> str:
    """The informative line of an ITK exception: its ``ERROR:`` line without the class/address prefix."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    flagged = [ln for ln in lines if "ERROR:" in ln] or lines[-1:] or [type(error).__name__]
    return _ITK_PREFIX.sub("", flagged[0])


_NATIVE_STDERR = threading.RLock()


@contextlib.contextmanager
def native_stderr_swallowed() -> Iterator[None]:
    """Discard what native code writes to the process's stderr (file descriptor 2) meanwhile.

    ITK's MetaImage and NRRD readers print their own lines from C++ (``MetaImage: M_ReadElementsData:
    data not read completely``) besides raising; the exception they raise becomes medcl's one-line error.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr descriptor: nothing to protect
        yield
        return
    with _NATIVE_STDERR, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _execute(reader: sitk.ImageFileReader | sitk.ImageSeriesReader, path: os.PathLike) -> sitk.Image:
    try:
        with native_stderr_swallowed():
            return reader.Execute()
    except RuntimeError as err:
        raise MedclError(f"{path}: truncated or corrupt image data ({_first_line(err)})") from None


def _check_channel(path: os.PathLike, dim: int, size: Sequence[int], channel: int | None) -> None:
    """A 4D image with several channels needs a channel index in range (one-line error otherwise).

    3D images (and 4D with one channel) are read as they are, so one ``channel`` setting can serve
    a 4D image and its 3D label map.
    """
    channels = size[3] if dim == 4 else 1
    if channels == 1:
        return
    if channel is not None and not 0 <= channel < channels:
        raise MedclError(f"{path}: channel {channel} is out of range; the image has {channels} channel(s)")
    if channels > 1 and channel is None:
        raise MedclError(f"{path}: is 4D with {channels} channels (size {tuple(size)}); choose one with "
                         f"--channel / data.channel (0-{channels - 1})")


def _check_header(path: os.PathLike, dim: int, size: Sequence[int], components: int) -> None:
    """Reject anything but a scalar, non-empty 3D image (a trailing 4th axis of length 1 is allowed)."""
    if dim == 4 and size[3] == 1:
        dim, size = 3, size[:3]
    if dim != 3:
        raise MedclError(f"{path}: has {dim} dimensions (size {tuple(size)}); expected a 3D image")
    if components != 1:
        raise MedclError(f"{path}: has {components} components per voxel; expected a scalar image")
    if min(size) == 0:
        raise MedclError(f"{path}: has zero size {tuple(size)}")


def _stored_length(path: Path, needed: int) -> int:
    """Bytes the file holds once decompressed (gzip trailer size; counted by streaming on mismatch)."""
    if not path.name.lower().endswith(".gz"):
        return path.stat().st_size
    with path.open("rb") as raw:
        raw.seek(-4, os.SEEK_END)
        if int.from_bytes(raw.read(4), "little") == needed % 2**32:
            return needed
        raw.seek(0)
        inflater, total = zlib.decompressobj(wbits=31), 0
        try:
            while chunk := raw.read(1 << 20):
                total += len(inflater.decompress(chunk))
        except zlib.error:
            pass
    return total


def _check_nifti_voxels(path: Path, nifti: Any) -> None:
    """Float NIfTI: the NIfTI C library silently zeroes NaN/Inf, so scan the stored voxels with nibabel."""
    try:
        voxels = nifti.dataobj.get_unscaled()
    except (OSError, EOFError, ValueError, zlib.error) as err:
        raise MedclError(f"{path}: truncated or corrupt image data ({str(err).splitlines()[0]})") from None
    bad = voxels.size - int(np.count_nonzero(np.isfinite(voxels)))
    if bad:
        raise MedclError(f"{path}: contains {bad} NaN/Inf voxels")


def _raw_nifti_spacing(path: Path) -> np.ndarray | None:
    """The voxel spacing a NIfTI-1 header stores, before any reader "fixes" it (both nibabel and the
    NIfTI C library silently turn a zero ``pixdim`` into 1 mm and a negative one into its absolute value)."""
    import gzip

    import nibabel as nib

    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rb") as handle:
            block = handle.read(348)
        header = nib.Nifti1Header(block, check=False)
    except Exception:  # noqa: BLE001 - not a NIfTI-1 header: the readers report it
        return None
    if int(header["sizeof_hdr"]) != 348:
        return None
    ndim = int(np.clip(header["dim"][0], 1, 3))
    if int(header["sform_code"]) > 0:
        srow = np.stack([header["srow_x"], header["srow_y"], header["srow_z"]])[:, :ndim]
        return np.linalg.norm(srow, axis=0)
    return np.asarray(header["pixdim"][1 : 1 + ndim], dtype=np.float64)


def check_spacing(path: str | os.PathLike, spacing: Sequence[float]) -> None:
    """Voxel spacing must be finite and within [MIN_SPACING_MM, MAX_SPACING_MM] on every axis."""
    values = np.asarray(spacing, dtype=np.float64)
    if values.size and not (np.isfinite(values).all() and (values >= MIN_SPACING_MM).all()
                            and (values <= MAX_SPACING_MM).all()):
        shown = ", ".join(f"{v:g}" for v in values)
        raise MedclError(f"{path}: voxel spacing ({shown}) mm is not usable; each axis must be between "
                         f"{MIN_SPACING_MM:g} and {MAX_SPACING_MM:g} mm (fix the header; it is never replaced by 1 mm)")


def _check_qform_sform(path: Path, header: Any) -> None:
    """Both NIfTI geometries set (codes > 0) must agree: readers differ in which one they use (nibabel and
    ITK take the sform, other tools the qform), so a disagreement places the scan ambiguously."""
    if int(header["qform_code"]) <= 0 or int(header["sform_code"]) <= 0:
        return
    qform, sform = header.get_qform(), header.get_sform()
    rotation = float(np.abs(qform[:3, :3] - sform[:3, :3]).max())
    shift = float(np.linalg.norm(qform[:3, 3] - sform[:3, 3]))
    if rotation > QSFORM_TOL or shift > QSFORM_SHIFT_MM:
        raise MedclError(f"{path}: qform and sform disagree (axes differ by up to {rotation:.3g}, origins by "
                         f"{shift:.3g} mm); which geometry is meant is ambiguous (fix the header: set one, or both "
                         "alike)")


def _check_nifti_file(path: Path) -> None:
    """Checks SimpleITK's NIfTI reader skips: bad spacing (made 1 mm), zero size, truncation (zero-filled)
    and NaN/Inf (zeroed)."""
    import nibabel as nib

    raw_spacing = _raw_nifti_spacing(path)
    if raw_spacing is not None:
        check_spacing(path, raw_spacing)
    try:
        nifti = nib.load(path)
    except Exception:  # noqa: BLE001 - not parseable by nibabel: SimpleITK reports it
        return
    header = nifti.header
    _check_qform_sform(path, header)
    shape = header.get_data_shape()
    if 0 in shape:
        raise MedclError(f"{path}: has zero size {tuple(shape)}")
    needed = int(nifti.dataobj.offset) + int(np.prod(shape)) * header.get_data_dtype().itemsize
    stored = _stored_length(path, needed)  # before any voxel is read: a header may claim terabytes
    if stored < needed:
        what = "truncated or corrupt image data" if path.name.lower().endswith(".gz") else "truncated"
        raise MedclError(f"{path}: {what} ({stored} of {needed} bytes)")
    if header.get_data_dtype().kind == "f":
        _check_nifti_voxels(path, nifti)


def read_header(path: str | os.PathLike) -> sitk.ImageFileReader:
    """A SimpleITK reader holding the header of ``path`` (no voxels read); one-line error otherwise,
    also for a voxel spacing that is not usable (:func:`check_spacing`, on the header as stored)."""
    path = Path(path)
    if not path.is_file():
        raise MedclError(f"{path}: no such file")
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        stored = _raw_nifti_spacing(path)
        if stored is not None:
            check_spacing(path, stored)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with native_stderr_swallowed():
            reader.ReadImageInformation()
    except RuntimeError as err:
        raise MedclError(f"{path}: not a readable image ({_first_line(err)})") from None
    check_spacing(path, reader.GetSpacing()[:3])
    check_orthogonal(path, reader.GetDirection(), reader.GetDimension())
    return reader


def check_orthogonal(path: str | os.PathLike, direction: Sequence[float], dim: int) -> None:
    """The voxel axes must be perpendicular: a sheared grid (non-orthogonal NRRD ``space directions``,
    a sheared NIfTI sform) is resampled as if it were orthogonal, misplacing every voxel off its axis."""
    matrix = np.asarray(direction, dtype=np.float64).reshape(dim, dim)[:3, :3]
    gram = matrix.T @ matrix
    if np.abs(gram - np.diag(np.diag(gram))).max() > ORTHOGONAL_TOL:
        cosines = np.abs(gram - np.diag(np.diag(gram))).max()
        angle = float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))))
        raise MedclError(f"{path}: voxel axes are not perpendicular (sheared grid: {angle:.1f} degrees between two "
                         "axes); resample it to an orthogonal grid first")


def _read_file(path: Path, channel: int | None = None) -> sitk.Image:
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        _check_nifti_file(path)
    reader = read_header(path)
    dim, size = reader.GetDimension(), reader.GetSize()
    _check_channel(path, dim, size, channel)
    if dim == 4:
        dim, size = 3, size[:3]  # one channel of it is read below
    _check_header(path, dim, size, reader.GetNumberOfComponents())
    image = _execute(reader, path)
    return image[:, :, :, channel if size_4d_channels(image) > 1 else 0] if image.GetDimension() == 4 else image


def channel_count(path: str | os.PathLike) -> int:
    """Length of the 4th axis of an image file from its header (1 for 3D files, folders, unreadable files)."""
    p = Path(path)
    if not p.is_file():
        return 1
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return 1  # read_sitk_image reports it
    return reader.GetSize()[3] if reader.GetDimension() == 4 else 1


def size_4d_channels(image: sitk.Image) -> int:
    """Length of the 4th axis (1 for a 3D image)."""
    return image.GetSize()[3] if image.GetDimension() == 4 else 1


def _check_voxels(path: os.PathLike, image: sitk.Image) -> None:
    """Reject a wrong dimension (DICOM series), unusable spacing and NaN/Inf voxels."""
    _check_header(path, image.GetDimension(), image.GetSize(), image.GetNumberOfComponentsPerPixel())
    check_spacing(path, image.GetSpacing())
    voxels = sitk.GetArrayViewFromImage(image)
    if voxels.dtype.kind == "f":
        bad = voxels.size - int(np.count_nonzero(np.isfinite(voxels)))
        if bad:
            raise MedclError(f"{path}: contains {bad} NaN/Inf voxels")


def check_not_constant(image: Any, path: str | os.PathLike) -> None:
    """A (near-)constant scan (blank, all one value, or noise far below its level) carries no anatomy:
    refuse it instead of segmenting/embedding/training on it.

    Near-constant: ``max - min <= CONSTANT_RELATIVE_RANGE * max(|min|, |max|)``.
    """
    data = image.as_tensor() if hasattr(image, "as_tensor") else image
    data = data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)
    low, high = float(np.min(data)), float(np.max(data))
    if high - low <= CONSTANT_RELATIVE_RANGE * max(abs(low), abs(high)):
        kind = "constant" if high == low else "near-constant"
        raise MedclError(f"{path}: image is {kind} (intensities {low:g} to {high:g}); it holds no anatomy")


def read_sitk_image(
    path: str | os.PathLike, series: str | None = None, channel: int | None = None
) -> tuple[sitk.Image, dict[str, Any]]:
    """Read and validate a 3D scalar image file or DICOM series folder with SimpleITK.

    Args:
        path: a NIfTI/NRRD/MHA/MHD file, or a folder holding DICOM series (searched recursively).
        series: DICOM series UID or description, needed when the folder holds several series.
        channel: index along the 4th axis of a 4D image (e.g. MSD Task05 T2 = 0, ADC = 1).

    Returns:
        The SimpleITK image and extra metadata (``series_uid``/``series_description`` for DICOM).

    Raises:
        MedclError: missing path, not an image, truncated data, not 3D, not scalar, empty, NaN/Inf.
    """
    p = Path(path)
    if not p.exists():
        raise MedclError(f"{path}: no such file or folder")
    if p.is_dir():
        image, extra = _read_dicom_series(p, series)
    elif series is not None:
        raise MedclError(f"{path}: series={series!r} applies only to a DICOM folder")
    else:
        image, extra = _read_file(p, channel), {}
    _check_voxels(path, image)
    return image, extra


# --------------------------------------------------------------------------------------- MONAI


def is_image_path(path: str | os.PathLike) -> bool:
    """True for a folder (DICOM series) or a file with a supported image suffix."""
    p = Path(path)
    return p.is_dir() or p.name.lower().endswith(IMAGE_SUFFIXES)


class SITKReader(ImageReader):
    """MONAI ``ImageReader`` backed by SimpleITK, returning RAS affines like ``NibabelReader``.

    Use as ``LoadImaged(keys, reader=SITKReader())`` or, so that its :class:`MedclError` reaches
    the caller instead of MONAI falling back to other readers, :class:`LoadScand`. Also registered
    in MONAI's ``SUPPORTED_READERS`` as ``"sitkreader"`` (tried after MONAI's own readers).

    Args:
        series: DICOM series UID or description for folders that hold several series.
    """

    def __init__(self, series: str | None = None, channel: int | Sequence[int] | None = None) -> None:
        super().__init__()
        self.series, self.channel = series, channel

    def verify_suffix(self, filename: Sequence[os.PathLike] | os.PathLike) -> bool:
        """Accept folders (DICOM series) and NIfTI/NRRD/MHA/MHD/DICOM files."""
        return all(is_image_path(f) for f in ensure_tuple(filename))

    def read(self, data: Sequence[os.PathLike] | os.PathLike, **kwargs: Any) -> Any:
        """Read one path (or several, to be stacked as channels) into validated SimpleITK images."""
        images = [item for f in ensure_tuple(data) for item in self._read_channels(f)]
        return images if len(images) > 1 else images[0]

    def _read_channels(self, path: os.PathLike) -> list[tuple[str, sitk.Image, dict[str, Any]]]:
        """One entry per requested channel (stacked by :meth:`get_data`); a 3D file is read once."""
        channels = list(self.channel) if isinstance(self.channel, (list, tuple)) else [self.channel]
        if len(channels) > 1 and channel_count(path) == 1:  # e.g. the 3D label map beside 4D images
            channels = [None]
        return [(str(path), *read_sitk_image(path, self.series, c)) for c in channels]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """Return the ``(X, Y, Z)`` array (channels stacked first if several) and MONAI metadata."""
        items = img if isinstance(img, list) else [img]
        arrays = [sitk.GetArrayFromImage(image).T for _, image, _ in items]
        metas = [_meta_dict(image, extra) for _, image, extra in items]
        for (name, _, _), meta in zip(items[1:], metas[1:]):
            if not torch.allclose(meta["affine"], metas[0]["affine"], atol=1e-4):
                raise MedclError(f"{name}: geometry differs from {items[0][0]}; cannot stack as channels")
        if len(arrays) == 1:
            return arrays[0], metas[0]
        metas[0]["original_channel_dim"] = 0
        return np.stack(arrays), metas[0]


def _meta_dict(image: sitk.Image, extra: dict[str, Any]) -> dict[str, Any]:
    """MONAI metadata; arrays as tensors so cached items load with ``torch.load(weights_only=True)``."""
    affine = torch.from_numpy(sitk_affine(image))
    return {
        "affine": affine,
        "original_affine": affine.clone(),
        "spatial_shape": torch.tensor(image.GetSize()),
        "spacing": torch.tensor(image.GetSpacing(), dtype=torch.float64),
        "space": "RAS",
        "original_channel_dim": float("nan"),
        **extra,
    }


class LoadScand(LoadImaged):
    """``LoadImaged`` that always reads with :class:`SITKReader` (no silent fallback to other readers).

    MONAI's ``LoadImaged`` retries other readers when the chosen one raises, which would let
    e.g. nibabel load a NaN-filled NIfTI that ``SITKReader`` rejected; here the reader's
    :class:`MedclError` propagates unchanged.

    Args:
        keys: keys of the items holding paths.
        series: DICOM series UID or description.
        kwargs: passed to ``LoadImaged`` (e.g. ``image_only``, ``ensure_channel_first``, ``dtype``).
    """

    def __init__(
        self, keys: Any, series: str | None = None, channel: int | Sequence[int] | None = None, **kwargs: Any
    ) -> None:
        self.sitk_reader = SITKReader(series=series, channel=channel)
        self.channel = channel
        super().__init__(keys, reader=self.sitk_reader, **kwargs)

    def __call__(self, data: Any, reader: ImageReader | None = None) -> Any:
        """Read; an item's own ``channel`` (a datalist of 4D images) overrides the configured one."""
        self.sitk_reader.channel = data.get("channel", self.channel) if isinstance(data, Mapping) else self.channel
        return super().__call__(data, reader or self.sitk_reader)


def read_image(
    path: str | os.PathLike, series: str | None = None, dtype: Any = np.float32,
    channel: int | Sequence[int] | None = None,
) -> MetaTensor:
    """Read a 3D scan as a channel-first ``(1, X, Y, Z)`` ``MetaTensor`` with its RAS affine.

    A list of ``channel`` indices reads those channels of a 4D image as ``(C, X, Y, Z)`` (e.g. MSD
    Task05 T2 + ADC, which share one grid).

    Args:
        path: NIfTI/NRRD/MHA/MHD file or DICOM folder.
        series: DICOM series UID or description when the folder holds several.
        dtype: output dtype (``None`` keeps the stored voxel type, e.g. ``uint8`` labels).
        channel: index (or list of indices) along the 4th axis of a 4D image.
    """
    return _loader(dtype)(path, reader=SITKReader(series=series, channel=channel))


@functools.cache
def _loader(dtype: Any) -> LoadImage:
    return LoadImage(reader=None, image_only=True, ensure_channel_first=True, dtype=dtype)


# --------------------------------------------------------------------------------------- writing


def _spatial_array(array: Any, shape: tuple[int, ...], path: os.PathLike) -> np.ndarray:
    data = array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
    if data.ndim == 4 and data.shape[0] == 1:
        data = data[0]
    if data.shape != shape:
        raise MedclError(f"{path}: array shape {data.shape} does not match the reference grid {shape}")
    return data


def _reference_geometry(reference: MetaTensor) -> tuple[np.ndarray, tuple[int, ...]]:
    affine = reference.affine
    affine = affine.detach().cpu().numpy() if hasattr(affine, "detach") else np.asarray(affine)
    return affine.astype(np.float64), tuple(int(s) for s in reference.shape[-3:])


def write_like(
    array: Any, reference: MetaTensor, path: str | os.PathLike, dtype: Any = np.float32
) -> Path:
    """Write ``array`` on the exact grid of ``reference`` (affine, spacing, direction), atomically.

    NIfTI outputs are written with nibabel, with sform and qform both set (code 1, scanner) and
    millimetre units; other suffixes (``.nrrd``, ``.mha``) go through SimpleITK.

    Args:
        array: ``(X, Y, Z)`` or ``(1, X, Y, Z)`` array/tensor on the reference grid.
        reference: image whose ``affine`` (RAS) and spatial shape define the grid.
        path: output file; its suffix picks the format.
        dtype: voxel type written (e.g. ``np.uint8`` for labels).
    """
    import nibabel as nib

    affine, shape = _reference_geometry(reference)
    data = _spatial_array(array, shape, path).astype(dtype, copy=False)
    with atomic_write_path(path) as tmp:
        if Path(path).name.lower().endswith(NIFTI_SUFFIXES):
            nifti = nib.Nifti1Image(data, affine)
            nifti.set_sform(affine, code=1)
            nifti.set_qform(affine, code=1)
            nifti.header.set_xyzt_units("mm")
            nib.save(nifti, tmp)
        else:
            image = sitk.GetImageFromArray(np.ascontiguousarray(data.T))
            spacing, direction, origin = affine_to_sitk_geometry(affine)
            image.SetSpacing(spacing)
            image.SetDirection(direction)
            image.SetOrigin(origin)
            sitk.WriteImage(image, str(tmp), useCompression=True)
    return Path(path)


# --------------------------------------------------------------------------------------- inspect


def inspect_image(path: str | os.PathLike, series: str | None = None) -> dict[str, Any]:
    """Geometry (SimpleITK x-y-z order), orientation and intensity summary of a scan, as plain JSON types."""
    image, extra = read_sitk_image(path, series)
    voxels = sitk.GetArrayViewFromImage(image)
    p1, p50, p99 = np.percentile(voxels, [1, 50, 99]).tolist()
    return {
        "path": str(path),
        **extra,
        "shape": list(image.GetSize()),
        "spacing": list(image.GetSpacing()),
        "origin": list(image.GetOrigin()),
        "direction": list(image.GetDirection()),
        "orientation": orientation_code(image),
        "affine_ras": sitk_affine(image).tolist(),
        "dtype": image.GetPixelIDTypeAsString(),
        "intensity": {
            "min": float(voxels.min()),
            "max": float(voxels.max()),
            "mean": float(voxels.mean()),
            "std": float(voxels.std()),
            "p1": p1,
            "p50": p50,
            "p99": p99,
        },
    }


def _register_reader() -> None:
    """Make ``"sitkreader"`` a MONAI reader name, inserted first so auto-selection tries it last."""
    if "sitkreader" not in SUPPORTED_READERS:
        # MONAI >= 1.6's NvImgCodecPydicomReader logs and warns on every LoadImage without nvImageCodec (3 lines
        # on stderr per command) and otherwise is PydicomReader, which stays: medcl reads DICOM through ITK.
        readers = {k: v for k, v in SUPPORTED_READERS.items() if k != "nvimgcodecpydicomreader"}
        SUPPORTED_READERS.clear()
        SUPPORTED_READERS.update({"sitkreader": SITKReader, **readers})


_register_reader()
