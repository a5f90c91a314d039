"""The match job: a reference image's keypoints found in many targets, resumable (`insid3 match`).

One <stem>.json per target (engine/jobs/match_outputs.py): each keypoint's match in target pixels
and its peak similarity; optionally <stem>.csv and <stem>.match.jpg (side by side, a line per
keypoint). The reference is encoded once and the targets go through the backbone in batches. The
folder's insid3-job.json records the bundle, the reference image, the points and the options; a
re-run with the same ones skips finished targets, with others it stops and says what changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from insid3.engine.jobs.manifest import MANIFEST_FILE, JobManifest, claim_folder
from insid3.engine.jobs.match_outputs import MatchOutputs, record_of
from insid3.engine.jobs.outputs.files import remove_temporaries
from insid3.engine.jobs.segment import JobCounts, Say
from insid3.engine.jobs.targets import check_input_files, expand_targets, readable_targets, writable_folder
from insid3.engine.runtime.correspondence import MatchOptions, check_points, parse_points
from insid3.engine.runtime.images import load_rgb
from insid3.engine.runtime.reference import EncodingFingerprint
from insid3.engine.runtime.segmenter import Segmenter
from insid3.errors import InputImageError, KeypointError, SettingsError
from insid3.format.bundle import Bundle, load_bundle
from insid3.format.settings import Hyperparameters
from insid3.format.verify import sha256_of
from insid3.kernels.correspondence import SIGMA_PATCHES, TEMPERATURE


@dataclass(frozen=True, kw_only=True)
class MatchJobSettings:
    """A match job. The keypoints: `points` (text: "x,y;x,y" or JSON) or `points_file`, one of them.
    debiased: match with the positional subspace removed (svd_components None: the bundle's s)."""

    bundle: Path
    reference: str  # as typed: the JSON records it so
    targets: tuple[str, ...]
    out: Path
    points: str | None = None
    points_file: Path | None = None
    debiased: bool = True
    svd_components: int | None = None
    backend: str = "auto"
    precision: str = "fp32"
    batch_size: int = 8
    csv: bool = False
    visualize: bool = False
    overwrite: bool = False
    progress: bool = True

    def validated(self) -> MatchJobSettings:
        if (self.points is None) == (self.points_file is None):
            raise SettingsError("give the keypoints as --points or --points-file, one of them")
        if self.batch_size < 1:
            raise SettingsError(f"--batch-size must be >= 1, got {self.batch_size}")
        return self


@dataclass(frozen=True)
class MatchJobManifest(JobManifest):
    """The segment job's manifest, its reference entry the image and the points' digests."""

    def differences(self, other: JobManifest) -> list[str]:
        names = {"bundle": "the bundle", "references": "the reference image or its points",
                 "hyperparameters": "the matching options", "format": "the output files (--csv)",
                 "precision": "the precision"}
        return [words for field, words in names.items() if getattr(self, field) != getattr(other, field)]


def read_points(settings: MatchJobSettings) -> list[tuple[float, float]]:
    if settings.points is not None:
        return parse_points(settings.points, "--points")
    path = settings.points_file
    if path.is_dir():
        raise KeypointError(f"--points-file {path} is a folder: give a file of points")
    if not path.is_file():
        raise KeypointError(f"--points-file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeypointError(f"--points-file {path} cannot be read: {exc}") from None
    return parse_points(text, f"--points-file {path}")


def effective_components(settings: MatchJobSettings, bundle: Bundle) -> int | None:
    """The s matching will use (checked now, before a model loads); None when not debiased."""
    if not settings.debiased:
        return None
    meta = bundle.metadata
    s = meta.defaults.svd_components if settings.svd_components is None else settings.svd_components
    Hyperparameters(svd_components=s).validated(meta.embed_dim)
    return s


def job_manifest(settings: MatchJobSettings, bundle: Bundle, points, s: int | None) -> MatchJobManifest:
    points_digest = hashlib.sha256(json.dumps([list(map(float, p)) for p in points]).encode()).hexdigest()
    options = {"debiased": settings.debiased, "svd_components": s, "sigma_patches": SIGMA_PATCHES,
               "temperature": TEMPERATURE}
    return MatchJobManifest(
        bundle=asdict(EncodingFingerprint.of(bundle, s or 0)),
        references=((sha256_of(Path(settings.reference)), points_digest),),
        hyperparameters=options, format="json+csv" if settings.csv else "json", precision=settings.precision,
    )


def run_match_job(settings: MatchJobSettings, say: Say) -> JobCounts:
    """Match every target not done yet into `settings.out`; `say` gets the lines a user reads."""
    settings.validated()
    bundle = load_bundle(settings.bundle)
    targets = expand_targets(settings.targets)
    clash = next((target for target in targets if f"{target.stem}.json" == MANIFEST_FILE), None)
    if clash is not None:  # its <stem>.json would replace the job's manifest
        raise InputImageError(f"target {clash}: its matches would be written over {MANIFEST_FILE}: rename it")
    check_input_files([("--ref", Path(settings.reference))])
    out = writable_folder(settings.out)
    reference_rgb = load_rgb(settings.reference)
    points = check_points(read_points(settings), (reference_rgb.height, reference_rgb.width),
                          f"--ref {settings.reference}")
    s = effective_components(settings, bundle)
    remove_temporaries(out)
    outputs = MatchOutputs(out, with_csv=settings.csv, with_picture=settings.visualize)
    claim_folder(out, job_manifest(settings, bundle, points, s), overwrite=settings.overwrite,
                 has_outputs=outputs.has_outputs())
    todo = targets if settings.overwrite else [t for t in targets if not outputs.done(t)]
    counts = JobCounts(out=out, skipped=len(targets) - len(todo))
    try:
        segmenter = Segmenter.from_bundle(settings.bundle, backend=settings.backend, precision=settings.precision)
        say(f"{segmenter.describe()}; {len(points)} point(s), "
            f"{'debiased, s=' + str(s) if s is not None else 'original features'}")
        reference = segmenter.encode_image(reference_rgb)
        options = MatchOptions(debiased=settings.debiased, svd_components=s)
        readable = readable_targets(segmenter.prepare, todo, counts.failures)
        found_all = segmenter.matcher.match_stream(reference, points, readable, options, settings.batch_size)
        with tqdm(total=len(todo), unit="img", desc="matching", disable=not settings.progress) as bar:
            for item, found in found_all:
                record = record_of(found, reference=settings.reference, reference_size=reference.original_size,
                                   target=item.name, source_points=points, debiased=settings.debiased,
                                   svd_components=s)
                outputs.write(record, reference_rgb, load_rgb(item.name) if settings.visualize else None)
                counts.done += 1
                bar.update(counts.done + len(counts.failures) - bar.n)
            bar.update(counts.done + len(counts.failures) - bar.n)
    except KeyboardInterrupt:
        counts.interrupted = True
    finally:
        outputs.close()  # lets the folder go
    return counts
