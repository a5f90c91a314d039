"""`insid3-segment`: batch annotation of files, folders and globs with cached references.

    insid3-segment --bundle bundles/dinov3-vits16-768 --ref cat.jpg --ref-mask cat.png \
        --out masks/ photos/ 'more/*.jpg'
    insid3-segment --bundle B --concept cat=cat.jpg:cat.png --concept dog=dog.jpg:dog.png \
        --format coco --instances --out annotations/ photos/

One concept (--ref, repeated for more shots) or several named ones (--concept, --concepts FILE:
engine/jobs/concept_specs.py), all found in one pass per target (Segmenter.segment_concepts); written
as mask PNGs, a label PNG, COCO instances or YOLO segmentation labels (engine/jobs/outputs/).
Unreadable targets are reported and skipped. The output folder's
insid3-job.json records what made its masks: a re-run with the same bundle, references and
settings resumes where the last one stopped (Ctrl-C included: exit 130, nothing lost); with
other inputs it stops and says what changed, unless --overwrite.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from insid3.engine.jobs.concept_specs import ConceptSpec, check_files, merge, parse_concept_flag, read_concepts_file
from insid3.engine.jobs.manifest import JobManifest, JobMismatchError, claim_folder
from insid3.engine.jobs.outputs import FORMATS, SEGMENTATIONS, OutputOptions, Writer, open_writer
from insid3.engine.jobs.outputs.coco import COCO_FILE
from insid3.engine.jobs.outputs.files import remove_temporaries
from insid3.engine.jobs.ray_data.cluster import add_ray_arguments, check_ray_arguments
from insid3.engine.runtime.concepts import ConceptsResult
from insid3.engine.runtime.images import PreparedImage
from insid3.engine.runtime.reference import EncodingFingerprint, Reference
from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import InputImageError, Insid3Error
from insid3.format.bundle import Bundle, load_bundle
from insid3.format.refinement import add_refine_arguments, refine_from_args

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
__all__ = ["COCO_FILE", "main"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="insid3-segment", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bundle", required=True, help="engine bundle folder (insid3-export)")
    parser.add_argument("--ref", action="append", help="reference image of one concept (repeat for more shots)")
    parser.add_argument("--ref-mask", action="append", help="mask of the preceding --ref")
    parser.add_argument("--concept", action="append", metavar="NAME=IMAGE:MASK",
                        help="a named concept's example (repeat; a name given again adds a shot)")
    parser.add_argument("--concepts", metavar="FILE", help="JSON or YAML: {name: [{image: PATH, mask: PATH}, ...]}")
    parser.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime, openvino, torch")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="CPU precision (openvino)")
    parser.add_argument("--batch-size", type=int, default=8, help="targets per backbone call")
    add_refine_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="png",
                        help="png: masks per concept; label-png: label map + legend.json; coco/coco-rle: "
                             "masks.coco.json; yolo-seg: labels/*.txt + data.yaml")
    parser.add_argument("--category", default="object", help="the name of the --ref concept (COCO, YOLO, legend)")
    parser.add_argument("--instances", action="store_true", help="coco: one annotation per connected component")
    parser.add_argument("--min-area", type=int, default=0, help="coco --instances, yolo-seg: drop smaller components")
    parser.add_argument("--segmentation", choices=SEGMENTATIONS, default="rle", help="coco: RLE or polygons")
    parser.add_argument("--simplify", type=float, default=1.0, metavar="PX",
                        help="polygon simplification tolerance in pixels (0: every boundary vertex)")
    parser.add_argument("--overlay", action="store_true", help="also write <stem>.overlay.jpg")
    parser.add_argument("--overwrite", action="store_true", help="redo targets whose output exists")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("targets", nargs="+", help="image files, folders or glob patterns (with --ray, URIs too: "
                                                   "s3://bucket/photos/, gs://..., file://...)")
    add_ray_arguments(parser)
    args = parser.parse_args(argv)
    args.ref, args.ref_mask = args.ref or [], args.ref_mask or []
    if len(args.ref) != len(args.ref_mask):
        parser.error(f"{len(args.ref)} --ref but {len(args.ref_mask)} --ref-mask: give one mask per reference")
    named = bool(args.concept or args.concepts)
    if named == bool(args.ref):
        parser.error("give the concept to find as --ref/--ref-mask, or named concepts as --concept/--concepts")
    if args.instances and args.format not in ("coco", "coco-rle"):
        parser.error("--instances applies to --format coco (yolo-seg writes one row per component anyway)")
    if args.segmentation == "polygon" and args.format != "coco":
        parser.error("--segmentation polygon applies to --format coco")
    if args.min_area < 0 or args.simplify < 0:
        parser.error("--min-area and --simplify must be >= 0")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    check_ray_arguments(parser, args)
    return args


def expand_targets(patterns: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns, in order, without duplicates."""
    return unique_targets([path for pattern in patterns for path in expand_pattern(pattern)], patterns)


def expand_pattern(pattern: str) -> list[Path]:
    path = Path(pattern)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if path.exists():
        return [path]
    if glob.has_magic(pattern):
        return sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
    raise InputImageError(f"target {pattern} does not exist")


def unique_targets(found: list, patterns: list[str]) -> list:
    """The targets without duplicates, refused when none or when two share a stem (paths or URIs)."""
    unique = list(dict.fromkeys(found))
    if not unique:
        raise InputImageError(f"no target images found in {' '.join(patterns)}")
    stems: dict[str, Path] = {}
    for path in unique:
        if path.stem in stems:
            raise InputImageError(
                f"targets {stems[path.stem]} and {path} share the stem {path.stem!r}: their masks would collide"
            )
        stems[path.stem] = path
    return unique


def check_paths(args: argparse.Namespace) -> Path:
    """Every path argument checked before any model loads; the output folder, created last."""
    for flag, paths in (("--ref", args.ref or []), ("--ref-mask", args.ref_mask or [])):
        for path in map(Path, paths):
            if path.is_dir():
                raise InputImageError(f"{flag} {path} is a folder: give an image file")
            if not path.is_file():
                raise InputImageError(f"{flag} {path} does not exist")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputImageError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputImageError(f"--out {out} cannot be written: {exc.strerror or exc}") from None
    return out


def concepts_of(args: argparse.Namespace) -> list[ConceptSpec]:
    """The concepts to find, in label order: the --ref shots as one concept named --category, or
    the --concepts file's then the --concept flags' (names and files checked)."""
    if args.ref:  # its files are checked with the other path flags (check_paths)
        return [ConceptSpec(args.category, tuple(zip(map(Path, args.ref), map(Path, args.ref_mask))))]
    named = read_concepts_file(Path(args.concepts)) if args.concepts else []
    specs = merge(named + [parse_concept_flag(text) for text in args.concept or []])
    check_files(specs)
    return specs


def open_outputs(args: argparse.Namespace, bundle: Bundle, out: Path, concepts: list[ConceptSpec]) -> Writer:
    """The output folder's writer, after checking that it holds this job's outputs or none."""
    remove_temporaries(out)
    options = OutputOptions(
        format=args.format, names=tuple(spec.name for spec in concepts), per_concept_files=not args.ref,
        overlay=args.overlay, instances=args.instances, min_area=args.min_area, segmentation=args.segmentation,
        tolerance=args.simplify,
    )
    outputs = open_writer(out, options)
    fingerprint = asdict(EncodingFingerprint.of(bundle, bundle.metadata.defaults.svd_components))
    hyperparameters, fmt = bundle.metadata.defaults.to_json(), options.describe()
    refine = refine_from_args(args)
    if refine.crf:  # recorded only when on, so the bilinear jobs of earlier releases still resume
        hyperparameters["refine"] = refine.to_json()
    if args.ref:  # one unnamed concept: the manifest of earlier releases
        manifest = JobManifest.describe_run(fingerprint, list(zip(args.ref, args.ref_mask)), hyperparameters, fmt,
                                            args.precision)
    else:
        named = [(spec.name, list(spec.shots)) for spec in concepts]
        manifest = JobManifest.describe_concepts_run(fingerprint, named, hyperparameters, fmt, args.precision)
    try:
        replaces = claim_folder(out, manifest, overwrite=args.overwrite, has_outputs=outputs.has_outputs())
    except JobMismatchError:
        outputs.close()
        raise
    outputs.start(fresh=replaces)
    return outputs


def segment_here(args: argparse.Namespace, concepts: list[ConceptSpec], todo: list[Path],
                 failures: list[tuple[Path, str]]) -> Iterator[tuple[Path, ConceptsResult]]:
    """(target, result) in order, on this machine; unreadable targets go to `failures`."""
    segmenter = Segmenter.from_bundle(args.bundle, backend=args.backend, precision=args.precision,
                                      refine=refine_from_args(args))
    print(f"insid3-segment: {segmenter.describe()}", file=sys.stderr)
    # Shot by shot, as set_reference + add_reference encode them (earlier releases' masks).
    references = {
        spec.name: Reference.from_shots(
            tuple(shot for pair in spec.shots for shot in segmenter.encode_shots([pair])), segmenter.fingerprint)
        for spec in concepts
    }

    def readable() -> Iterator[PreparedImage]:
        for target in todo:
            try:
                yield segmenter.prepare(target)
            except InputImageError as exc:
                failures.append((target, str(exc)))

    results = segmenter.segment_concepts_stream(readable(), references, args.batch_size)
    return ((Path(item.name), result) for item, result in results)


def run(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    if args.ray:  # URIs too (engine/jobs/ray_data/inputs.py)
        from insid3.engine.jobs.ray_data.inputs import RemoteTarget, list_targets

        targets = list_targets(args.targets)
        if args.overlay and any(isinstance(t, RemoteTarget) for t in targets):
            raise InputImageError("--overlay reads each target again on this machine: not with URI targets")
    else:
        targets = expand_targets(args.targets)
    concepts = concepts_of(args)
    out = check_paths(args)
    outputs = open_outputs(args, bundle, out, concepts)
    todo = targets if args.overwrite else [t for t in targets if not outputs.done(t)]
    skipped = len(targets) - len(todo)
    failures: list[tuple[Path, str]] = []
    done = 0
    results: Iterator[tuple[Path, ConceptsResult]] = iter(())
    try:
        if args.ray:  # a Ray Data pipeline (engine/jobs/ray_data/segment.py), written here as below
            from insid3.engine.jobs.ray_data.segment import segment_on_ray

            results = segment_on_ray(args, bundle, concepts, todo, failures)
        else:
            results = segment_here(args, concepts, todo, failures)
        with tqdm(total=len(todo), unit="img", desc="segmenting", file=sys.stderr) as bar:
            for target, result in results:
                outputs.write(target, result)
                done += 1
                bar.update(done + len(failures) - bar.n)  # failed targets count as progress too
            bar.update(done + len(failures) - bar.n)
    except KeyboardInterrupt:
        print(
            f"insid3-segment: interrupted: {done} segmented, {skipped} already done, kept in {out}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        if hasattr(results, "close"):  # a generator: stops its pipeline (and a Ray instance started for it)
            results.close()
        outputs.close()
    for target, why in failures:
        print(f"insid3-segment: skipped {target}: {why}", file=sys.stderr)
    print(
        f"insid3-segment: {done} segmented, {skipped} already done, {len(failures)} failed -> {args.out}",
        file=sys.stderr,
    )
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING)
    args = parse_args(argv)
    try:
        return run(args)
    except Insid3Error as exc:
        print(f"insid3-segment: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the first mask: nothing to keep
        print("insid3-segment: interrupted before any target was segmented", file=sys.stderr)
        return 130


def console_main() -> None:
    """The console command: main(), then, after a --ray run, an immediate exit (exit_after)."""
    code = main()
    if "--ray" in sys.argv[1:]:
        from insid3.engine.jobs.ray_data.cluster import exit_after

        exit_after(code)
    sys.exit(code)


if __name__ == "__main__":
    console_main()
