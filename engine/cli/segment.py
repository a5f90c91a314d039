"""Batch annotation of files, folders and globs with cached references.

    insid3 segment --bundle bundles/dinov3-vits16-768 --ref cat.jpg --ref-mask cat.png \\
        --out masks/ photos/ 'more/*.jpg'
    insid3 segment --bundle B --concept cat=cat.jpg:cat.png --concept dog=dog.jpg:dog.png \\
        --format coco --instances --out annotations/ photos/

One concept (--ref, repeated for more shots) or several named ones (--concept, --concepts FILE),
found in one pass per target. The output folder's insid3-job.json records what made its masks: a
re-run resumes where the last one stopped (Ctrl-C included: exit 130, nothing lost); with other
inputs it stops and says what changed, unless --overwrite. The job itself: engine/jobs/segment.py.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from insid3.engine.cli import arguments as shared
from insid3.engine.cli.runner import job_summary

__all__ = ["configure", "main", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    from insid3.engine.jobs.outputs import FORMATS, SEGMENTATIONS

    shared.add_bundle(parser)
    concepts = parser.add_argument_group("the concepts to find (--ref/--ref-mask, or --concept/--concepts)")
    concepts.add_argument("--ref", action="append", default=[],
                          help="reference image of one concept (repeat for more shots)")
    concepts.add_argument("--ref-mask", action="append", default=[], help="mask of the preceding --ref")
    concepts.add_argument("--category", default="object", help="the name of the --ref concept (COCO, YOLO, legend)")
    concepts.add_argument("--concept", action="append", default=[], metavar="NAME=IMAGE:MASK",
                          help="a named concept's example (repeat; a name given again adds a shot)")
    concepts.add_argument("--concepts", metavar="FILE", help="JSON or YAML: {name: [{image: PATH, mask: PATH}, ...]}")
    shared.add_backend(parser)
    shared.add_precision(parser)
    shared.add_batch_size(parser)
    shared.add_hyperparameters(parser)
    shared.add_refine(parser)
    shared.add_profile(parser)
    formats = parser.add_argument_group("output")
    formats.add_argument("--format", choices=FORMATS, default="png",
                         help="png: masks per concept; label-png: label map + legend.json; coco/coco-rle: "
                              "masks.coco.json; yolo-seg: labels/*.txt + data.yaml; label-studio: "
                              "tasks.label-studio.json (docs/label-studio.md)")
    formats.add_argument("--instances", action="store_true", help="coco: one annotation per connected component")
    formats.add_argument("--min-area", type=int, default=0, help="coco --instances, yolo-seg: drop smaller components")
    formats.add_argument("--segmentation", choices=SEGMENTATIONS, default="rle",
                         help="coco, label-studio: RLE (brush) or polygons")
    formats.add_argument("--label-studio-root", default="/data/local-files/?d=", metavar="PREFIX",
                         help="label-studio: what precedes each target's path in its task (Label Studio's "
                              "local storage, or a URL prefix)")
    formats.add_argument("--simplify", type=float, default=1.0, metavar="PX",
                         help="polygon simplification tolerance in pixels (0: every boundary vertex)")
    formats.add_argument("--overlay", action="store_true", help="also write <stem>.overlay.jpg")
    shared.add_output(formats)
    shared.add_quality(parser)
    shared.add_progress(parser)
    parser.add_argument("targets", nargs="+", help="image files, folders or glob patterns (with --ray, URIs too: "
                                                   "s3://bucket/photos/, gs://..., file://...)")
    shared.add_ray(parser)


def settings_from(args: argparse.Namespace):
    from insid3.engine.jobs.segment import SegmentJobSettings

    shared.profile_into(args)  # --profile: what the command line leaves unset
    if len(args.ref) != len(args.ref_mask):
        raise shared.UsageError(
            f"{len(args.ref)} --ref but {len(args.ref_mask)} --ref-mask: give one mask per reference")
    return SegmentJobSettings(
        bundle=Path(args.bundle), targets=tuple(args.targets), out=Path(args.out),
        shots=tuple(zip(map(Path, args.ref), map(Path, args.ref_mask))), category=args.category,
        concept_flags=tuple(args.concept), concepts_file=Path(args.concepts) if args.concepts else None,
        backend=args.backend, precision=args.precision, batch_size=args.batch_size,
        svd_components=args.svd_components, tau=args.tau, merge_threshold=args.merge_threshold,
        refine=shared.refine_from(args), format=args.format, instances=args.instances, min_area=args.min_area,
        segmentation=args.segmentation, simplify=args.simplify, overlay=args.overlay, overwrite=args.overwrite,
        min_score=args.min_score, quality=shared.quality_from(args), label_studio_root=args.label_studio_root,
        cluster=shared.cluster_from(args), progress=not args.no_progress,
        profile=Path(args.profile) if args.profile else None,
    ).validated()


def run(args: argparse.Namespace, prog: str) -> int:
    from insid3.engine.jobs.segment import run_segment_job

    logging.basicConfig(level=logging.WARNING)
    settings = settings_from(args)
    counts = run_segment_job(settings, say=lambda line: print(f"{prog}: {line}", file=sys.stderr))
    return job_summary(prog, counts, "segmented", args.out)


def main(argv: list[str] | None = None) -> int:
    """`insid3-segment ARGS` in-process (tests); `python -m insid3.engine.cli.segment` too."""
    from insid3.engine.cli.main import run_command

    return run_command("insid3-segment", "segment", argv)


if __name__ == "__main__":
    from insid3.engine.cli.main import alias

    alias("segment")()
