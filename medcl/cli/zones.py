"""``medcl zones``: segment new scans, evaluate label maps, train (handlers import lazily)."""

from __future__ import annotations

import argparse

from medcl.cli._helpers import add_command, add_device, add_group
from medcl.cli.zones_train import register_train
from medcl.utils import positive_float, positive_int, unit_interval


def _segment(args: argparse.Namespace) -> int:
    from medcl.data.layouts import parse_channel
    from medcl.pipelines.zones_segment import segment

    rows = segment(
        args.inputs, args.checkpoint, args.out, tta=not args.no_tta, device=args.device,
        sw_batch_size=args.sw_batch_size, overlap=args.overlap, roi_mm=args.roi_mm, series=args.series,
        channel=parse_channel(args.channel), engine=args.engine, roi=args.roi,
        save_probabilities=args.save_probabilities, resume=args.resume, precision=args.precision, dicom_seg=args.dicom_seg,
    )
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"medcl: segmented {len(rows) - len(failed)} of {len(rows)} scans into {args.out}")
    return 1 if failed else 0


def _evaluate(args: argparse.Namespace) -> int:
    from medcl.pipelines.zones_segment import evaluate

    summary = evaluate(args.pred_dir, args.ref_dir, args.out)
    for zone, s in summary["zones"].items():
        print(f"{zone}: Dice {s['dice_mean']} over {s['n_dice']}; MASD {s['masd_mm_mean']} mm; "
              f"HD95 {s['hd95_mm_mean']} mm; empty pred/ref/both {s['n_pred_empty']}/{s['n_ref_empty']}/{s['n_both_empty']}")
    return 1 if summary["n_failed"] else 0


def _sectors(args: argparse.Namespace) -> int:
    from medcl.pipelines.zones_sectors import sectors_from_zone_maps

    rows = sectors_from_zone_maps(args.zonemaps, args.out)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"medcl: wrote sector maps of {len(rows) - len(failed)} of {len(rows)} zone maps into {args.out}")
    return 1 if failed else 0


def _add_sectors(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "sectors", "PI-RADS v2.1 sector maps of existing zone label maps (0-4)", _sectors)
    p.add_argument("zonemaps", nargs="+", metavar="ZONEMAP",
                   help="zone label maps (NIfTI/NRRD/MHA; 1 PZ, 2 TZ, 3 DPU, 4 AFS)")
    p.add_argument("--out", required=True, help="output folder for <case>_sectors.nii.gz and <case>_sectors.json")


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "segment", "segment prostate zones of scans (files or DICOM series folders)", _segment)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="NIfTI/NRRD/MHA files, folders of them, or DICOM series folders")
    p.add_argument("--series", default=None, help="DICOM series UID or description (study folders)")
    p.add_argument("--channel", default=None,
                   help="channel(s) of 4D images, e.g. 0 or 0,1 (default: as the model was trained)")
    p.add_argument("--checkpoint", required=True, nargs="+",
                   help="zones checkpoint(s) (.ckpt from `medcl zones train` or weights-only model.safetensors); "
                        "several: fold ensemble (averaged); with --engine onnxruntime one `medcl export --format "
                        "onnx` folder")
    p.add_argument("--engine", choices=("torch", "onnxruntime"), default="torch",
                   help="run the network in PyTorch (default) or onnxruntime (ONNX export folder)")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write <case>_probabilities.npz (float16, BG + zones, input grid, RAS affine)")
    p.add_argument("--continue", dest="resume", action="store_true",
                   help="skip cases whose outputs in --out are complete")
    p.add_argument("--out", required=True, help="output folder (not an input's folder)")
    add_device(p)
    p.add_argument("--sw-batch-size", type=positive_int, default=2, help="sliding windows per forward pass")
    p.add_argument("--overlap", type=unit_interval, default=0.25, help="sliding-window overlap in [0, 1)")
    p.add_argument("--no-tta", action="store_true", help="disable left-right flip test-time augmentation")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write <case>_zones.seg.dcm, a DICOM SEG of the source series (DICOM inputs; extra dicom-seg)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto: bfloat16 on a GPU that has it, else float32; bf16: bfloat16 autocast also on the CPU")
    p.add_argument("--roi-mm", type=positive_float, nargs=3, default=(80.0, 80.0, 120.0), metavar=("LR", "AP", "SI"),
                   help="region of interest in mm (default 80 80 120; with --roi auto the smallest crop)")
    p.add_argument("--roi", choices=("auto", "center"), default="auto",
                   help="auto: localise the gland with a coarse pass and crop around it (default); "
                   "center: fixed box centred on the field of view")
    p.add_argument("--allow-nonuniform", action="store_true",
                   help="resample DICOM series with a missing slice or uneven slice spacing (default: refuse them)")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "evaluate", "Dice/MASD/HD95 per zone of <case>_zones.nii.gz against references", _evaluate)
    p.add_argument("pred_dir", help="folder with <case>_zones.nii.gz")
    p.add_argument("ref_dir", help="folder with reference label maps <case>.nii[.gz]")
    p.add_argument("--out", required=True, help="folder for per_zone.csv, per_case.csv, summary.json")


def register(subparsers: argparse._SubParsersAction) -> None:
    sub = add_group(subparsers, "zones", "prostate zone segmentation: train, segment, evaluate, sectors")
    register_train(sub)
    _add_segment(sub)
    _add_evaluate(sub)
    _add_sectors(sub)
