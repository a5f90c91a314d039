"""What made an output folder's contents, so a re-run resumes only when that is unchanged.

`insid3-segment` writes `insid3-job.json` into its output folder before the first mask: the
bundle's fingerprint (model and basis sha256, resolution, svd_components), the sha256 of every
reference image and mask, per concept, in order, with its name (--ref's shots are one concept, named
by --category), the hyperparameters, the output format (with the options that change its files) and the
precision. A re-run into the same folder compares those and resumes when they are equal;
otherwise it stops with one line naming what changed (unless the folder holds no outputs of
that format yet: a job that failed before its first target does not hold it). The tool version is recorded for the
reader, not compared: a new insid3 release computes the same masks from the same inputs. So is
the calibration profile given with --profile (its file and sha256): what it set is compared, as
hyperparameters and format.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import insid3
from insid3.engine.jobs.job_folder import hold_folder, release_folder, write_atomically
from insid3.errors import Insid3Error
from insid3.format.verify import sha256_of

__all__ = ["MANIFEST_FILE", "JobManifest", "JobMismatchError", "claim_folder", "write_atomically"]

MANIFEST_FILE = "insid3-job.json"


class JobMismatchError(Insid3Error):
    """An output folder holds results of other inputs than this run's."""


@dataclass(frozen=True)
class JobManifest:
    bundle: dict  # EncodingFingerprint fields
    references: tuple[tuple[str, str], ...]  # insid3-match's reference (match.py); () for a segment job
    hyperparameters: dict
    format: str
    precision: str
    # A segment job's concepts (--ref's shots are one, named by --category): (name, ((image sha256,
    # mask sha256), ...)), in label order.
    concepts: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    tool_version: str = insid3.__version__
    # The calibration profile the hyperparameters and --min-score came from ({"file", "sha256"}, or
    # None): for the reader, not compared (what it applied is, in `hyperparameters` and `format`).
    profile: dict | None = None

    @classmethod
    def describe_run(
        cls, bundle: dict, concepts: list[tuple[str, list[tuple[str, str]]]], hyperparameters: dict, fmt: str,
        precision: str,
    ) -> "JobManifest":
        """A segment run over its concepts, each (name, its (image, mask) shots), in label order."""
        described = tuple(
            (name, tuple((sha256_of(Path(image)), sha256_of(Path(mask))) for image, mask in shots))
            for name, shots in concepts
        )
        return cls(bundle=bundle, references=(), hyperparameters=hyperparameters, format=fmt, precision=precision,
                   concepts=described)

    def differences(self, other: "JobManifest") -> list[str]:
        """What differs, in words; the tool version does not count."""
        names = {"bundle": "the bundle", "concepts": "the concepts or their reference images or masks",
                 "hyperparameters": "the hyperparameters", "format": "the output format", "precision": "the precision"}
        return [words for field, words in names.items() if getattr(self, field) != getattr(other, field)]

    def to_json(self) -> dict:
        data = asdict(self)
        data["references"] = [list(pair) for pair in self.references]
        data["concepts"] = [[name, [list(pair) for pair in shots]] for name, shots in self.concepts]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "JobManifest":
        return cls(
            bundle=data["bundle"], references=tuple(tuple(pair) for pair in data["references"]),
            hyperparameters=data["hyperparameters"], format=data["format"], precision=data["precision"],
            concepts=tuple((name, tuple(tuple(pair) for pair in shots)) for name, shots in data["concepts"]),
            tool_version=data["tool_version"], profile=data["profile"],
        )


def claim_folder(folder: Path, manifest: JobManifest, *, overwrite: bool, has_outputs: bool) -> bool:
    """Record `manifest` in `folder`; JobMismatchError when the folder holds another job's outputs
    (or outputs no manifest vouches for). True when --overwrite takes over another job's outputs.
    The folder is held by this job from here on (job_folder.hold_folder; FolderBusyError when another
    running job holds it); a claim that fails lets it go, as the job found it."""
    hold_folder(folder)
    try:
        return _claim(folder, manifest, overwrite=overwrite, has_outputs=has_outputs)
    except BaseException:
        release_folder(folder, unused=True)
        raise


def _claim(folder: Path, manifest: JobManifest, *, overwrite: bool, has_outputs: bool) -> bool:
    path = folder / MANIFEST_FILE
    replaces = overwrite and has_outputs and _recorded_job_differs(path, manifest)
    if not path.is_file() and has_outputs and not overwrite:
        raise JobMismatchError(
            f"{folder} holds masks but no {MANIFEST_FILE} saying what made them: "
            "use --overwrite to redo them, or another --out"
        )
    if path.is_file() and not overwrite:
        try:
            recorded = JobManifest.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise JobMismatchError(f"{path} is unreadable ({exc}): use --overwrite to start this folder anew") from None
        changed = manifest.differences(recorded)
        # A manifest without outputs is a job that stopped before its first target (an empty reference
        # mask, say): none of its results can mix with this run's, unless they are of another format.
        if changed and (has_outputs or recorded.format != manifest.format):
            raise JobMismatchError(
                f"{folder} holds the results of another job ({', '.join(changed)} changed): "
                "use --overwrite to redo them, or another --out"
            )
    write_atomically(path, (json.dumps(manifest.to_json(), indent=2) + "\n").encode())
    return replaces


def _recorded_job_differs(path: Path, manifest: JobManifest) -> bool:
    """Whether the manifest at `path` is missing, unreadable or another job's."""
    try:
        return bool(manifest.differences(JobManifest.from_json(json.loads(path.read_text()))))
    except (OSError, ValueError, KeyError, TypeError):
        return True
