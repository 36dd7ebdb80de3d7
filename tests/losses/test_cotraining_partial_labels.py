"""Partial labels: marginal loss (Shi et al. 2021) and validation Dice over annotated zones only.

The learning test trains a tiny dual-path net on four-zone phantoms, alone or mixed with PZ/TZ-only
cases (DPU drawn as TZ, AFS as background, as in MSD/Prostate158). With the marginal loss the
mixed run keeps the DPU/AFS probabilities on held-out four-zone phantoms near those of the
four-zone-only run; treating the same PZ/TZ-only cases as fully annotated (the old behaviour)
drives them down, which shows the test catches the corruption.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcl.data.synthetic.prostate import make_phantom
from medcl.data.zones_labels import (
    AFS,
    DPU,
    PZ,
    TZ,
    ZONES_TO_B,
    annotated_mask,
    merged_classes,
    observed_label,
)
from medcl.losses.cotraining import ZonesSupervisedLoss, class_groups, marginal_probabilities
from medcl.nets.dualpath import build_zones_net
from medcl.pipelines.zones import annotated_dice, with_annotation

SHAPE, SPACING = (32, 32, 8), (1.0, 1.0, 3.0)  # 32 mm field of view around the gland
PZ_TZ = annotated_mask(["PZ", "TZ"])


def test_msd_remap_declares_pz_tz_and_hosts_dpu_in_tz_afs_in_background():
    assert annotated_mask(remap="msd") == PZ_TZ == (True, True, True, False, False)
    assert observed_label(PZ_TZ) == (0, PZ, TZ, TZ, 0)
    assert merged_classes(PZ_TZ, ZONES_TO_B) == (0, 1, 1, 0)  # path B: BG+AFS, TZ+DPU
    assert merged_classes((True,) * 5, ZONES_TO_B) == (0, 1, 2, 3)
    assert with_annotation([{"image": "x", "zones": ["TZ"]}], "identity")[0]["annotated"].tolist() == [
        True, False, True, False, False]


def test_marginal_probabilities_sum_the_merged_classes_by_hand():
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).view(1, 4, 1, 1, 1)
    groups = class_groups(torch.tensor([PZ_TZ]), ZONES_TO_B)
    q = marginal_probabilities(logits, groups).flatten()
    assert q.tolist() == pytest.approx([0.5, 0.5, 0.0, 0.0])  # BG 0.1 + AFS 0.4, TZ 0.2 + DPU 0.3


def test_partial_case_loss_does_not_depend_on_how_tz_splits_into_tz_and_dpu():
    loss = ZonesSupervisedLoss(aux="mask")
    label = torch.full((1, 1, 4, 4, 2), TZ)
    a = torch.zeros(1, 3, 4, 4, 2)
    b1, b2 = torch.zeros(1, 4, 4, 4, 2), torch.zeros(1, 4, 4, 4, 2)
    b1[:, 1], b2[:, 2] = 3.0, 3.0  # all TZ vs all DPU on path B
    out1 = {"a": a, "b": b1, "aux": torch.zeros(1, 1, 4, 4, 2)}
    out2 = {"a": a, "b": b2, "aux": torch.zeros(1, 1, 4, 4, 2)}
    partial = torch.tensor([PZ_TZ])
    t1, t2 = loss.terms(out1, label, annotated=partial), loss.terms(out2, label, annotated=partial)
    assert float(t1["b"]) == pytest.approx(float(t2["b"]), abs=1e-6)
    assert "aux" not in t1  # AFS unannotated: the gland outline is unknown
    full1, full2 = loss.terms(out1, label), loss.terms(out2, label)
    assert float(full2["b"]) > float(full1["b"]) + 1.0 and "aux" in full1


def test_validation_dice_skips_unannotated_zones_and_reads_dpu_as_tz():
    label = torch.zeros(1, 1, 6, 6, 2, dtype=torch.long)
    label[..., 1:5, 1:5, :] = TZ
    label[..., 0, :, :] = PZ
    pred = label.clone()
    pred[..., 2:4, 2:4, :] = DPU  # a urethra inside what the reference draws as TZ
    partial = annotated_dice(pred, label, torch.tensor([PZ_TZ]))[0]
    assert partial[PZ - 1] == pytest.approx(1.0) and partial[TZ - 1] == pytest.approx(1.0)
    assert torch.isnan(partial[DPU - 1]) and torch.isnan(partial[AFS - 1])
    full = annotated_dice(pred, label, None)[0]
    assert full[TZ - 1] == pytest.approx(2 * 24 / (24 + 32))  # 32 reference TZ voxels, 24 predicted


def _case(seed: int, partial: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ph = make_phantom(seed, shape=SHAPE, spacing=SPACING)
    label = torch.as_tensor(np.asarray(ph.label), dtype=torch.long)
    if partial:
        label = torch.as_tensor(observed_label(PZ_TZ))[label]
    image = torch.as_tensor(np.asarray(ph.image), dtype=torch.float32)
    image = (image - image.mean()) / image.std()
    return image[None], label[None]


def _train(cases, annotated, steps: int = 60) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_zones_net({"arch": "dualpath", "filters": [4, 8, 8, 8]})
    loss_fn = ZonesSupervisedLoss(aux="mask")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = torch.stack([c[0] for c in cases])
    y = torch.stack([c[1] for c in cases])
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(net(x), y, annotated=annotated).backward()
        opt.step()
    return net.eval()


def _mean_probs(net: torch.nn.Module, cases) -> dict[int, float]:
    with torch.no_grad():
        totals = {DPU: [], AFS: []}
        for image, label in cases:
            probs, _ = net.zone_probabilities(image[None])
            for zone in totals:
                totals[zone].append(probs[0, zone][label[0] == zone].mean())
    return {z: float(torch.stack(v).mean()) for z, v in totals.items()}


@pytest.mark.slow
def test_pz_tz_only_cases_do_not_drive_dpu_afs_to_zero_with_the_marginal_loss():
    four = [_case(s, False) for s in (1, 2)]
    partial = [_case(s, True) for s in (3, 4, 5, 6)]
    heldout = [_case(s, False) for s in (11, 12)]
    mixed = four + partial
    mask = torch.tensor([(True,) * 5] * 2 + [PZ_TZ] * 4)
    alone = _mean_probs(_train(four, None), heldout)
    marginal = _mean_probs(_train(mixed, mask), heldout)
    naive = _mean_probs(_train(mixed, None), heldout)
    print({"four_zone_only": alone, "mixed_marginal": marginal, "mixed_naive": naive})
    for zone in (DPU, AFS):
        assert alone[zone] > 0.1  # the tiny net learned the zone from the four-zone cases
        assert marginal[zone] > 0.6 * alone[zone]  # PZ/TZ-only cases do not unlearn it
        assert naive[zone] < 0.5 * marginal[zone]  # the corruption the marginal loss prevents


def test_mixed_datalist_batches_carry_each_case_annotation(shared_data, tmp_path):
    """Four-zone phantoms and real PZ/TZ-only Prostate158 cases in one datalist batch together."""
    from medcl.data.datalist import write_datalist
    from medcl.data.synthetic.prostate import write_dataset
    from medcl.pipelines.zones import ZonesConfig, build_loaders

    phantoms = read_items(write_dataset(tmp_path / "ph", n=2, seed=3, n_validation=0))
    case = shared_data / "mri" / "prostate158-sample" / "001"
    real = {"image": str(case / "t2.nii.gz"), "label": str(case / "t2_anatomy_reader1.nii.gz"),
            "zone_remap": {"0": 0, "1": 2, "2": 1}, "zones": ["PZ", "TZ"], "dataset": "prostate158"}
    datalist = write_datalist(tmp_path / "mixed.json", {"training": [*phantoms, real]}, synthetic=True)
    cfg = ZonesConfig.model_validate({
        "data": {"datalist": str(datalist), "pixdim": [1.0, 1.0, 3.0], "patch_size": [32, 32, 8],
                 "samples_per_volume": 1, "batch_size": 3, "cache": "none"},
        "model": {"filters": [4, 8, 8], "kernel_sizes": [[3, 3, 1], [3, 3, 1], [3, 3, 3]],
                  "strides": [[1, 1, 1], [2, 2, 1], [2, 2, 2]]}})
    batch = next(iter(build_loaders(cfg, datalist, 1, tmp_path / "cache")["train"]))
    rows = sorted(tuple(r) for r in batch["annotated"].tolist())
    assert rows == [PZ_TZ, (True,) * 5, (True,) * 5]
    assert set(batch) >= {"image", "label", "annotated"} and "zone_remap" not in batch
    real_row = [i for i, r in enumerate(batch["annotated"].tolist()) if tuple(r) == PZ_TZ][0]
    assert set(torch.unique(batch["label"][real_row]).tolist()) <= {0, 1, 2}


def read_items(path):
    from medcl.data.datalist import read_datalist

    return read_datalist(path, "training", ("image", "label"))
