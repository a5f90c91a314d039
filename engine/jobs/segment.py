"""The segment job: targets in, one output folder out, resumable (what `insid3 segment` runs).

One concept (shots of (image, mask)) or several named ones (engine/jobs/concept_specs.py), all
found in one pass per target (Segmenter.segment_concepts); written as mask PNGs, a label PNG,
COCO instances or YOLO segmentation labels (engine/jobs/outputs/). Unreadable targets are
reported and skipped. The folder's insid3-job.json (engine/jobs/manifest.py) records what made its
masks: a re-run with the same inputs resumes, with others it stops and says what changed, unless
`overwrite`. Ctrl-C keeps what is done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from insid3.engine.jobs.concept_specs import ConceptSpec, check_files, merge, parse_concept_flag, read_concepts_file
from insid3.engine.jobs.manifest import JobManifest, JobMismatchError, claim_folder
from insid3.engine.jobs.outputs import FORMATS, SEGMENTATIONS, OutputOptions, Writer, open_writer
from insid3.engine.jobs.outputs.files import remove_temporaries
from insid3.engine.jobs.targets import check_input_files, expand_targets, readable_targets, writable_folder
from insid3.engine.runtime.concepts import ConceptsResult
from insid3.engine.runtime.quality import QualityThresholds
from insid3.engine.runtime.reference import EncodingFingerprint, Reference
from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import InputImageError, SettingsError
from insid3.format.bundle import Bundle, load_bundle
from insid3.format.profile import profile_record
from insid3.format.refinement import RefineSettings
from insid3.format.settings import Hyperparameters

if TYPE_CHECKING:
    from insid3.engine.jobs.ray_data.cluster import ClusterSettings

Say = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class SegmentJobSettings:
    """A segment job. The concepts: `shots` ((image, mask) pairs of one concept named `category`)
    or named ones from `concept_flags` ("NAME=IMAGE:MASK") and `concepts_file`; never both.
    None hyperparameters take the bundle's. `cluster`: run on Ray (URIs allowed as targets)."""

    bundle: Path
    targets: tuple[str, ...]
    out: Path
    shots: tuple[tuple[Path, Path], ...] = ()
    category: str = "object"
    concept_flags: tuple[str, ...] = ()
    concepts_file: Path | None = None
    backend: str = "auto"
    precision: str = "fp32"
    batch_size: int = 8
    svd_components: int | None = None
    tau: float | None = None
    merge_threshold: float | None = None
    refine: RefineSettings = field(default_factory=RefineSettings)
    format: str = "png"
    instances: bool = False
    min_area: int = 0
    segmentation: str = "rle"
    simplify: float = 1.0
    overlay: bool = False
    min_score: float | None = None  # below it a concept is judged absent: an empty mask (docs/quality.md)
    quality: QualityThresholds = field(default_factory=QualityThresholds)  # quality.csv's flags
    label_studio_root: str = "/data/local-files/?d="  # --format label-studio: what precedes a target's path
    overwrite: bool = False
    cluster: ClusterSettings | None = None
    progress: bool = True
    profile: Path | None = None  # the calibration profile the settings came from: recorded in the manifest

    def validated(self) -> SegmentJobSettings:
        named = bool(self.concept_flags or self.concepts_file)
        if named and self.shots:
            raise SettingsError("--ref and --concept/--concepts: name the concept to find one way, not both")
        if not named and not self.shots:
            raise SettingsError("give the concept to find as --ref/--ref-mask, or named concepts as --concept/--concepts")
        if self.format not in FORMATS or self.segmentation not in SEGMENTATIONS:
            raise SettingsError(f"format {self.format!r} / segmentation {self.segmentation!r}: unknown")
        if self.instances and self.format not in ("coco", "coco-rle"):
            raise SettingsError("--instances applies to --format coco (yolo-seg writes one row per component anyway)")
        if self.segmentation == "polygon" and self.format not in ("coco", "label-studio"):
            raise SettingsError("--segmentation polygon applies to --format coco and label-studio")
        if self.min_area < 0 or self.simplify < 0:
            raise SettingsError("--min-area and --simplify must be >= 0")
        if self.batch_size < 1:
            raise SettingsError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.min_score is not None and not 0 <= self.min_score <= 1:
            raise SettingsError(f"--min-score is a quality score in [0, 1], got {self.min_score:g}")
        return self

    def hyperparameters(self, bundle: Bundle) -> Hyperparameters:
        """The bundle's, with this job's overrides, checked against the model's width."""
        defaults = bundle.metadata.defaults
        return Hyperparameters(
            svd_components=defaults.svd_components if self.svd_components is None else self.svd_components,
            tau=defaults.tau if self.tau is None else self.tau,
            merge_threshold=defaults.merge_threshold if self.merge_threshold is None else self.merge_threshold,
        ).validated(bundle.metadata.embed_dim)


@dataclass
class JobCounts:
    """How a job ended: targets written now, skipped as done, failed (with why), interrupted."""

    out: Path
    done: int = 0
    skipped: int = 0
    failures: list[tuple[object, str]] = field(default_factory=list)
    interrupted: bool = False


def concepts_of(settings: SegmentJobSettings) -> list[ConceptSpec]:
    """The concepts to find, in label order: the shots as one concept named `category`, or the
    file's then the flags' (names and files checked)."""
    if settings.shots:  # its files are checked with the other inputs (check_input_files)
        return [ConceptSpec(settings.category, settings.shots)]
    named = read_concepts_file(settings.concepts_file) if settings.concepts_file else []
    specs = merge(named + [parse_concept_flag(text) for text in settings.concept_flags])
    check_files(specs)
    return specs


def open_outputs(settings: SegmentJobSettings, bundle: Bundle, hyperparameters: Hyperparameters,
                 concepts: list[ConceptSpec]) -> Writer:
    """The output folder's writer, after checking that it holds this job's outputs or none."""
    out = settings.out
    remove_temporaries(out)
    options = OutputOptions(
        format=settings.format, names=tuple(spec.name for spec in concepts), per_concept_files=not settings.shots,
        overlay=settings.overlay, instances=settings.instances, min_area=settings.min_area,
        segmentation=settings.segmentation, tolerance=settings.simplify, min_score=settings.min_score,
        quality=settings.quality, label_studio_root=settings.label_studio_root,
    )
    outputs = open_writer(out, options)
    fingerprint = asdict(EncodingFingerprint.of(bundle, hyperparameters.svd_components))
    recorded, fmt = {**hyperparameters.to_json(), "refine": settings.refine.to_json()}, options.describe()
    named = [(spec.name, list(spec.shots)) for spec in concepts]
    manifest = JobManifest.describe_run(fingerprint, named, recorded, fmt, settings.precision)
    if settings.profile is not None:
        manifest = replace(manifest, profile=profile_record(settings.profile))
    try:
        replaces = claim_folder(out, manifest, overwrite=settings.overwrite, has_outputs=outputs.has_outputs())
    except JobMismatchError:
        outputs.close()
        raise
    outputs.start(fresh=replaces)
    return outputs


def segment_here(settings: SegmentJobSettings, hyperparameters: Hyperparameters, concepts: list[ConceptSpec],
                 todo: list[Path], failures: list[tuple[object, str]],
                 say: Say) -> Iterator[tuple[Path, ConceptsResult]]:
    """(target, result) in order, on this machine; unreadable targets go to `failures`."""
    segmenter = Segmenter.from_bundle(settings.bundle, backend=settings.backend, precision=settings.precision,
                                      svd_components=hyperparameters.svd_components, tau=hyperparameters.tau,
                                      merge_threshold=hyperparameters.merge_threshold, refine=settings.refine)
    say(segmenter.describe())
    # Shot by shot, as set_reference + add_reference encode them: a batch of shots could round
    # differently in the backbone, and a job's masks must not depend on how its shots were given.
    references = {
        spec.name: Reference.from_shots(
            tuple(shot for pair in spec.shots for shot in segmenter.encode_shots([pair])), segmenter.fingerprint)
        for spec in concepts
    }
    results = segmenter.segment_concepts_stream(readable_targets(segmenter.prepare, todo, failures), references,
                                                settings.batch_size)
    return ((Path(item.name), result) for item, result in results)


def list_targets(settings: SegmentJobSettings) -> list:
    """The job's targets: paths here; with a cluster, URIs too (engine/jobs/ray_data/inputs.py)."""
    if settings.cluster is None:
        return expand_targets(settings.targets)
    from insid3.engine.jobs.ray_data.inputs import RemoteTarget, list_targets

    targets = list_targets(list(settings.targets))
    if settings.overlay and any(isinstance(t, RemoteTarget) for t in targets):
        raise InputImageError("--overlay reads each target again on this machine: not with URI targets")
    return targets


def run_segment_job(settings: SegmentJobSettings, say: Say) -> JobCounts:
    """Segment every target not done yet into `settings.out`; `say` gets the lines a user reads."""
    settings.validated()
    bundle = load_bundle(settings.bundle)
    targets = list_targets(settings)
    concepts = concepts_of(settings)
    check_input_files([("--ref", image) for image, _ in settings.shots] + [("--ref-mask", m) for _, m in settings.shots])
    hyperparameters = settings.hyperparameters(bundle)
    out = writable_folder(settings.out)
    outputs = open_outputs(settings, bundle, hyperparameters, concepts)
    todo = targets if settings.overwrite else [t for t in targets if not outputs.done(t)]
    counts = JobCounts(out=out, skipped=len(targets) - len(todo))
    results: Iterator[tuple[Path, ConceptsResult]] = iter(())
    try:
        if settings.cluster is not None:  # a Ray Data pipeline (engine/jobs/ray_data/segment.py), written here
            from insid3.engine.jobs.ray_data.cluster import SegmenterSpec
            from insid3.engine.jobs.ray_data.segment import segment_on_ray

            segmenter = SegmenterSpec(
                bundle=str(settings.bundle), backend=settings.backend, precision=settings.precision,
                refine=settings.refine, svd_components=hyperparameters.svd_components, tau=hyperparameters.tau,
                merge_threshold=hyperparameters.merge_threshold)
            results = segment_on_ray(settings.cluster, segmenter, bundle, concepts, todo, counts.failures,
                                     batch_size=settings.batch_size, say=say)
        else:
            results = segment_here(settings, hyperparameters, concepts, todo, counts.failures, say)
        with tqdm(total=len(todo), unit="img", desc="segmenting", disable=not settings.progress) as bar:
            for target, result in results:
                outputs.write(target, result)
                counts.done += 1
                bar.update(counts.done + len(counts.failures) - bar.n)  # failed targets count as progress too
            bar.update(counts.done + len(counts.failures) - bar.n)
    except KeyboardInterrupt:
        counts.interrupted = True
    finally:
        if hasattr(results, "close"):  # a generator: stops its pipeline (and a Ray instance started for it)
            results.close()
        outputs.close()
    return counts
