"""The argument groups every verb shares, written once, and the parser they go on.

A verb's `configure(parser)` picks the groups it needs (`add_bundle`, `add_backend`, ...) and adds
its own flags; its `run(args, prog)` turns the parsed flags into the library's frozen settings
with the `*_from` functions here (`refine_from`, `cluster_from`, ...). Library code never sees
argparse: it lives in `insid3.engine.cli` only (tests/test_cli_layer.py checks).

Choices come from where they are defined (backends from the registry, refinements from
insid3.format.refinement), so help never goes stale.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, NoReturn

from insid3.errors import Insid3Error

if TYPE_CHECKING:
    from insid3.engine.jobs.ray_data.cluster import ClusterSettings
    from insid3.format.refinement import RefineSettings

PRECISIONS = ("fp32", "bf16")  # the CPU backends' compute precision (bf16: OpenVINO on AMX CPUs)


class UsageError(Insid3Error):
    """A command line that does not parse: one line, exit 2 (the runner prints it)."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help, once: not for required options, flags, None defaults,
    nor help that already says its default. Descriptions keep their line breaks (examples)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text.lower()
            or action.required
            or default is None
            or default is argparse.SUPPRESS
            or default in ("", [], ())
            or action.nargs == 0  # store_true / store_false / store_const
            or (not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE))
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: `error` raises UsageError for the runner to print."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def new_parser(prog: str, description: str | None, epilog: str | None = None) -> Parser:
    parser = Parser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    return parser


# --- types -------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def at_least(flag: str, value: float | None, least: float) -> None:
    """A usage error when a given numeric flag is below `least` (None: not given)."""
    if value is not None and value < least:
        raise UsageError(f"{flag} must be >= {least:g}, got {value:g}")


# --- the shared groups ---------------------------------------------------------------------------


def add_bundle(parser: argparse.ArgumentParser, *, required: bool = True, help: str | None = None) -> None:
    parser.add_argument("--bundle", required=required, help=help or "engine bundle folder (insid3 export)")


def backend_names() -> tuple[str, ...]:
    """auto, then every backend of the registry (engine/runtime/backends/__init__.py)."""
    from insid3.engine.runtime.backends import BACKENDS

    return ("auto", *BACKENDS)


def add_backend(parser: argparse.ArgumentParser, *, default: str = "auto", help: str | None = None) -> None:
    names = backend_names()

    def backend(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"unknown backend {text!r}: choose one of {', '.join(names)}")
        return text

    parser.add_argument("--backend", default=default, type=backend, choices=names,
                        help=help or "inference backend (auto: the fastest that can run here)")


def add_precision(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="CPU compute precision (bf16: OpenVINO on AMX CPUs)")


def add_batch_size(parser: argparse.ArgumentParser, *, default: int = 8, help: str = "targets per backbone call") -> None:
    parser.add_argument("--batch-size", type=positive_int, default=default, help=help)


def add_hyperparameters(parser: argparse.ArgumentParser, *, clustering: bool = True) -> None:
    """--svd-components, and with `clustering` --tau and --merge-threshold; None: the bundle's value."""
    group = parser.add_argument_group("hyperparameters (default: the bundle's, insid3.json)")
    group.add_argument("--svd-components", type=int, default=None, help="positional directions removed (s, §3-§4)")
    if clustering:
        group.add_argument("--tau", type=float, default=None, help="clustering threshold (§7)")
        group.add_argument("--merge-threshold", type=float, default=None, help="cluster merging threshold (§8)")


def add_profile(parser: argparse.ArgumentParser) -> None:
    """--profile FILE: what `insid3 calibrate` chose (docs/calibration.md); see `profile_into`."""
    parser.add_argument("--profile", default=None, metavar="FILE",
                        help="a calibration profile (insid3 calibrate): its svd_components, tau, merge_threshold, "
                             "refinement and score threshold (--min-score) wherever the command line gives none; "
                             "refused when made for another bundle")


def profile_into(args: argparse.Namespace) -> None:
    """Fill the hyperparameters, --refine (when left at bilinear) and --min-score the command line
    left unset from --profile, after checking the profile was calibrated for --bundle (one line if not)."""
    if getattr(args, "profile", None) is None:
        return
    from insid3.format.bundle import load_bundle
    from insid3.format.profile import read_profile

    profile = read_profile(args.profile)
    profile.require_bundle(load_bundle(args.bundle, verify=False), f"--profile {args.profile}")
    for name, value in profile.hyperparameters.to_json().items():
        if getattr(args, name, 0) is None:
            setattr(args, name, value)
    if getattr(args, "refine", None) == "bilinear":
        args.refine, args.crf_lattice = profile.refine.method, profile.refine.lattice_precision
    if getattr(args, "min_score", 0) is None and profile.min_score is not None:
        args.min_score = profile.min_score.threshold


def add_refine(parser: argparse.ArgumentParser, *, lattice: bool = True) -> None:
    """--refine and, with `lattice`, --crf-lattice (docs/crf.md)."""
    from insid3.format.refinement import LATTICE_PRECISIONS, REFINE_METHODS

    parser.add_argument("--refine", choices=REFINE_METHODS, default="bilinear",
                        help="mask refinement: the authors' bilinear upsampling, or their dense CRF on a band "
                             "around the mask's boundary (docs/crf.md; about 1 s per 1024 px target on 2 CPU cores)")
    if not lattice:  # a command whose CRF always runs in the authors' float32 (insid3 eval)
        return
    parser.add_argument("--crf-lattice", choices=LATTICE_PRECISIONS, default="float32",
                        help="--refine crf: the lattice's arithmetic, float32 as the authors' CUDA run or float64 "
                             "as the library's CPU build")


def refine_from(args: argparse.Namespace) -> RefineSettings:
    from insid3.format.refinement import RefineSettings

    return RefineSettings(method=args.refine, lattice_precision=args.crf_lattice)


def add_output(parser: argparse.ArgumentParser, *, required: bool = True, default: str | None = None,
               help: str = "output folder", overwrite_help: str = "redo targets whose output exists") -> None:
    """--out and --overwrite (a job resumes in its folder unless --overwrite)."""
    parser.add_argument("--out", required=required, default=default, help=help)
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_quality(parser: argparse.ArgumentParser) -> None:
    """--min-score and quality.csv's flag thresholds (docs/quality.md)."""
    from insid3.engine.runtime.quality import QualityThresholds

    rules = QualityThresholds()
    group = parser.add_argument_group("quality (every mask's score and flags, in quality.csv: docs/quality.md)")
    group.add_argument("--min-score", type=float, default=None, metavar="S",
                       help="write an empty mask where a concept's score is below S (judged absent); default: none")
    group.add_argument("--flag-tiny", type=float, default=rules.tiny, metavar="FRACTION",
                       help="flag a mask covering less of its image than this")
    group.add_argument("--flag-huge", type=float, default=rules.huge, metavar="FRACTION",
                       help="flag a mask covering more of its image than this")
    group.add_argument("--flag-fragmented", type=int, default=rules.fragmented, metavar="N",
                       help="flag a mask of more connected components than this")
    group.add_argument("--flag-low-score", type=float, default=rules.low_score, metavar="S",
                       help="flag a mask whose score is below this")


def quality_from(args: argparse.Namespace):
    """The QualityThresholds of --flag-*; a bad combination is a usage error."""
    from insid3.engine.runtime.quality import QualityThresholds

    try:
        return QualityThresholds(tiny=args.flag_tiny, huge=args.flag_huge, fragmented=args.flag_fragmented,
                                 low_score=args.flag_low_score)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_ray(parser: argparse.ArgumentParser) -> None:
    """--ray and the cluster's shape (engine/jobs/ray_data/cluster.py)."""
    group = parser.add_argument_group("Ray (dataset-scale jobs: docs/scale-out.md)")
    group.add_argument("--ray", action="store_true", help="run as a Ray Data pipeline on a Ray cluster")
    group.add_argument("--address", default=None,
                       help="the cluster to join, from one of its nodes (HEAD:6379, or auto: the one this node "
                            "belongs to); default: RAY_ADDRESS, else a local instance started for this job")
    group.add_argument("--workers", type=int, default=None,
                       help="actors running the model (default: one per GPU, else 2)")
    group.add_argument("--gpus-per-worker", type=float, default=None,
                       help="GPUs per actor (default: 1 where the cluster has GPUs, else 0: CPU actors)")
    group.add_argument("--cpus-per-worker", type=float, default=1.0,
                       help="CPUs per actor (a CPU actor's backend uses this many threads)")
    group.add_argument("--cluster-timeout", type=float, default=None, metavar="SECONDS",
                       help="how long to wait for room for the workers where an autoscaler may add nodes, then "
                            "stop (default: 600; 0: no limit)")


def cluster_from(args: argparse.Namespace) -> ClusterSettings | None:
    """The cluster settings of a --ray run (None without --ray); its flags without --ray are an error."""
    if not args.ray:
        if (args.address or args.workers is not None or args.gpus_per_worker is not None
                or args.cpus_per_worker != 1.0 or args.cluster_timeout is not None):
            raise UsageError("--address, --workers, --gpus-per-worker, --cpus-per-worker and --cluster-timeout "
                             "apply to --ray")
        return None
    from insid3.engine.jobs.ray_data.cluster import CLUSTER_TIMEOUT_S, ClusterSettings

    return ClusterSettings(address=args.address, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                           cpus_per_worker=args.cpus_per_worker,
                           timeout_s=CLUSTER_TIMEOUT_S if args.cluster_timeout is None else args.cluster_timeout)
