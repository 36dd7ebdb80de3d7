"""SepCLR data: TexDigits and cohort generators, group-balanced sampler, manifest validation."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medcl.data.manifest import read_manifest
from medcl.data.samplers import GroupBalancedBatchSampler
from medcl.data.synthetic import cohort, texdigits
from medcl.errors import MedclError


def test_texdigits_deterministic_and_labelled():
    a = texdigits.make_texdigits(40, seed=3)
    b = texdigits.make_texdigits(40, seed=3)
    c = texdigits.make_texdigits(40, seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (40, 1, 32, 32) and a.images.dtype == np.float32
    assert 0.0 <= a.images.min() and a.images.max() <= 1.0
    assert (a.digit[a.group == 0] == -1).all() and (a.digit[a.group == 1] >= 0).all()
    assert a.group.sum() == 20


def test_texdigits_blend_hand_computed():
    crops = np.stack([np.full((32, 32), 0.2, np.float32), np.full((32, 32), 0.9, np.float32)])
    masks = np.zeros((2, 24, 24), np.float32)
    masks[:, 10, 10] = 1.0
    masks[:, 11, 11] = 0.5
    out = texdigits._blend(crops, masks)
    assert out[0, 14, 14] == pytest.approx(0.6) and out[1, 14, 14] == pytest.approx(0.95)  # 0.5 crop + 0.5 digit
    assert out[0, 15, 15] == pytest.approx(0.35) and out[1, 15, 15] == pytest.approx(0.7)  # half-strength stroke
    assert out[0, 0, 0] == pytest.approx(0.1) and out[1, 20, 3] == pytest.approx(0.45)  # no digit: 0.5 crop


def test_texdigits_targets_differ_from_backgrounds_in_the_centre():
    d = texdigits.make_texdigits(400, seed=0)
    centre_std = d.images[:, 0, 8:24, 8:24].std(axis=(1, 2))
    assert centre_std[d.group == 1].mean() > 1.2 * centre_std[d.group == 0].mean()


def test_texdigits_train_test_disjoint_regions():
    tex = np.arange(100 * 200, dtype=np.float32).reshape(100, 200)  # unique value per pixel
    rng = np.random.default_rng(0)
    tr = texdigits._crops(tex, 50, "train", rng)
    te = texdigits._crops(tex, 50, "test", rng)
    assert np.intersect1d(tr, te).size == 0


def test_texdigits_write_dataset(tmp_path):
    manifest = texdigits.write_dataset(tmp_path, 10, seed=1)
    table = pd.read_csv(manifest)
    assert list(table.columns) == ["path", "group", "texture", "digit", "split"]
    assert set(table["split"]) == {"train", "test"} and set(table["group"]) == {"background", "target"}
    img = nib.load(tmp_path / table["path"][0]).get_fdata()
    assert img.shape == (32, 32)


def test_cohort_deterministic_and_geometry(tmp_path):
    a = cohort.make_cohort(6, seed=2, size=16)
    np.testing.assert_array_equal(a.images, cohort.make_cohort(6, seed=2, size=16).images)
    assert a.images.shape == (6, 1, 16, 16, 16)
    assert (a.attributes["lesion_subtype"][a.group == 0] == -1).all()
    assert set(a.attributes["lesion_subtype"][a.group == 1]) <= {0, 1, 2}
    manifest = cohort.write_dataset(tmp_path, 6, seed=2, size=16)
    table = pd.read_csv(manifest)
    img = nib.load(tmp_path / table["path"][0])
    np.testing.assert_allclose(img.affine[:3, :3], np.eye(3))
    np.testing.assert_allclose(img.affine[:3, 3], [-7.5] * 3)  # centred 1 mm grid
    np.testing.assert_allclose(img.get_fdata(), a.images[0, 0], atol=1e-6)
    assert table.loc[table.group == "background", "lesion_subtype"].isna().all()


def test_cohort_subtypes_balanced_and_split_stratified():
    c = cohort.make_cohort(64, seed=3, size=8)
    subtype = c.attributes["lesion_subtype"]
    assert np.bincount(subtype[c.group == 1]).tolist() == [11, 11, 10]  # 32 targets, as even as can be
    split = cohort.stratified_split(c, 0.3, seed=1)
    test = split == "test"
    # each stratum (healthy, three subtypes) sends round(0.3 * size) members to the test split
    assert [int((test & (subtype == k)).sum()) for k in (-1, 0, 1, 2)] == [10, 3, 3, 3]
    assert set(split) == {"train", "test"}
    np.testing.assert_array_equal(split, cohort.stratified_split(c, 0.3, seed=1))


def test_cohort_lesion_subtypes_differ_from_healthy():
    c = cohort.make_cohort(60, seed=0, size=16)
    tg = c.group == 1
    # targets have larger extreme intensities (bright lesions) or darker spots inside the head
    bright = c.images[:, 0].max(axis=(1, 2, 3))
    assert bright[tg & (c.attributes["lesion_subtype"] == 0)].mean() > bright[~tg].mean()


def test_sampler_batches_are_balanced_and_ddp_disjoint():
    groups = np.array([0] * 30 + [1] * 7)
    s = GroupBalancedBatchSampler(groups, batch_size=8, seed=0, num_replicas=1, rank=0)
    batches = list(s)
    assert len(batches) == len(s) == 5
    for b in batches:
        assert (groups[b] == 0).sum() == 4 and (groups[b] == 1).sum() == 4
    s.set_epoch(1)
    assert list(s) != batches
    ranks = [list(GroupBalancedBatchSampler(groups, 8, seed=0, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3
    background = [set(i for b in r for i in b if groups[i] == 0) for r in ranks]
    assert background[0].isdisjoint(background[1])  # 24 background draws over 30 -> no overlap
    with pytest.raises(ValueError, match="both groups"):
        GroupBalancedBatchSampler([0, 0, 0], 2)


def _manifest(tmp_path, rows, header="path,group"):
    path = tmp_path / "m.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def two_images(tmp_path):
    rng = np.random.default_rng(0)  # not constant: a blank image is refused as holding no anatomy
    for name in ("a", "b"):
        nib.save(nib.Nifti1Image(rng.random((4, 4, 4), np.float32), np.eye(4)), tmp_path / f"{name}.nii.gz")
    return tmp_path


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        (["a.nii.gz,background", "missing.nii.gz,target"], "path,group", r"row 2: image not found: .*missing"),
        (["a.nii.gz,background", "b.nii.gz,patient"], "path,group", r"row 2: unknown group 'patient'"),
        (["a.nii.gz,background", "b.nii.gz,background"], "path,group", r"no 'target' rows"),
        (["a.nii.gz,background", "notes.txt,target"], "path,group", r"row 2: .*notes.txt is not an image"),
        (["a.nii.gz,background", "fake.nii.gz,target"], "path,group", r"row 2: .*fake.nii.gz:? (is )?not a readable image"),
        (["a.nii.gz", "b.nii.gz"], "path", r"missing column 'group'"),
        (["a.nii.gz,background"], "file,group", r"missing column 'path'"),
    ],
)
def test_bad_manifests_are_clear_errors(two_images, rows, header, message):
    (two_images / "notes.txt").write_text("hello")
    (two_images / "fake.nii.gz").write_bytes(b"not an image")
    with pytest.raises(MedclError, match=message):
        read_manifest(_manifest(two_images, rows, header))


def test_manifest_reads_attributes_and_subjects(two_images):
    m = read_manifest(_manifest(two_images, ["a.nii.gz,background,3,train", "b.nii.gz,target,5,test"],
                                "path,group,age,split"))  # fmt: skip
    assert m.attributes == ["age"]
    assert m.groups.tolist() == [0, 1]
    assert m.table["subject"].tolist() == ["a", "b"]
    assert m.split.tolist() == ["train", "test"]
    assert all(p.startswith(str(two_images)) for p in m.paths)


def test_texdigits_crop_contrast_and_most_textured(monkeypatch):
    from medcl.pipelines.bench.sepclr import QUICK_SUBSET

    assert QUICK_SUBSET["textures"] == texdigits.most_textured(4)  # the real pictures (before patching)
    assert texdigits.TEXTURES.index("camera") not in QUICK_SUBSET["textures"]  # a flat sky in many crops
    flat = np.full((64, 200), 0.3, np.float32)
    stripes = np.tile(np.array([0.0, 1.0], np.float32), (64, 100))  # any 32x32 crop: half 0, half 1: std 0.5
    monkeypatch.setattr(texdigits, "_textures", lambda: (flat, stripes, 0.5 * stripes))
    monkeypatch.setattr(texdigits, "TEXTURES", ("flat", "stripes", "faint stripes"))
    assert texdigits.crop_contrast(0, "train") == pytest.approx(0.0, abs=1e-6)
    assert texdigits.crop_contrast(1, "test") == pytest.approx(0.5, abs=1e-6)
    assert texdigits.crop_contrast(2, "train") == pytest.approx(0.25, abs=1e-6)
    assert texdigits.most_textured(2) == [1, 2]
