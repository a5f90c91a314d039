"""`insid3 <verb>`: the one front door. This module imports almost nothing (the verb table is text):
a verb's module loads only when it runs, inside the runner, so Ctrl-C at any moment is one line.

The old command names are aliases of their verb, with the same flags: `insid3-export` is
`insid3 export`, `insid3-segment` is `insid3 segment`, and so on (pyproject.toml [project.scripts]).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

PROG = "insid3"


class Entry:
    """A verb: where it lives ("module" or "module:attribute"), one line of help, and its sub-verbs
    (`insid3 bench kernels`); without a sub-verb name the verb's own target runs. (A plain class:
    this module stays free of imports, dataclasses included.)"""

    __slots__ = ("target", "summary", "subverbs")

    def __init__(self, target: str, summary: str, subverbs: dict[str, Entry] | None = None) -> None:
        self.target, self.summary, self.subverbs = target, summary, subverbs or {}


def _cli(name: str) -> str:
    return f"insid3.engine.cli.{name}"


VERBS: dict[str, Entry] = {
    "export": Entry(_cli("export"), "a DINOv3 checkpoint (or a seeded random init) -> an engine bundle folder"),
    "segment": Entry(_cli("segment"), "segment files, folders and globs from references or named concepts"),
    "match": Entry(_cli("match"), "find a reference image's keypoints in many target images"),
    "serve": Entry(_cli("serve"), "the HTTP service: web page, REST API (/docs), Ray Serve with --ray"),
    "eval": Entry(_cli("evaluate:EVALUATE"), "the paper's benchmarks (mIoU, FB-IoU; SPair PCK), resumable", {
        "speed": Entry(_cli("evaluate:SPEED"), "episodes per second, ours beside the authors' way"),
        "sensitivity": Entry(_cli("evaluate:SENSITIVITY"), "per-episode IoU of two bundles (another basis)"),
        "report": Entry(_cli("evaluate:REPORT"), "several eval JSON reports in one Table 1"),
    }),
    "bench": Entry(_cli("bench:SIDE_BY_SIDE"), "FPS, latency per stage, memory, beside the authors' way", {
        "suite": Entry(_cli("bench:SUITE"), "every size x resolution, one report"),
        "kernels": Entry(_cli("bench:KERNELS"), "the post-processing kernels, as markdown tables"),
        "concepts": Entry(_cli("bench:CONCEPTS"), "N concepts in one pass vs N single passes"),
        "calibrate": Entry(_cli("bench:CALIBRATE"), "a 125-setting calibration sweep vs one setting"),
        "match": Entry(_cli("bench:MATCH"), "keypoint matching: ours vs the authors' way"),
        "crf": Entry(_cli("bench:CRF"), "what the dense-CRF refinement costs"),
        "crf-build": Entry(_cli("bench:CRF_BUILD"), "build the authors' CRF library for `bench crf`"),
        "serve": Entry(_cli("bench:LOADGEN"), "load on the HTTP service: throughput and latency"),
        "ray-jobs": Entry(_cli("bench:RAY_JOBS"), "segment's throughput locally and on Ray"),
        "gpu-acceptance": Entry(_cli("bench:GPU_ACCEPTANCE"), "the prepared GPU acceptance run"),
        "gpu-phase": Entry(_cli("bench:GPU_PHASE"), "one phase of the GPU acceptance run (it runs these)"),
    }),
    "calibrate": Entry(_cli("calibrate"), "tune svd_components, tau, merge_threshold to your labelled examples: a profile"),
    "demo": Entry(_cli("demo"), "the whole path on drawn scenes with a random-init bundle"),
}


def usage() -> str:
    width = max(map(len, VERBS))
    lines = [f"usage: {PROG} <verb> [options]   ({PROG} <verb> --help for a verb's options)", "",
             "Training-free in-context segmentation (INSID3) with a frozen DINOv3 ViT.", "", "verbs:"]
    for name, entry in VERBS.items():
        lines.append(f"  {name:<{width}}  {entry.summary}")
        if entry.subverbs:
            lines.append(f"  {'':<{width}}    {PROG} {name} {{{','.join(entry.subverbs)}}}")
    lines += ["", "options: --help, --version, --debug (the traceback of an unexpected error)",
              "aliases: insid3-export, insid3-segment, insid3-match, insid3-serve, insid3-eval, insid3-bench, "
              "insid3-demo"]
    return "\n".join(lines)


def subverbs_epilog(name: str, entry: Entry) -> str:
    width = max(map(len, entry.subverbs))
    rows = [f"  {sub:<{width}}  {e.summary}" for sub, e in entry.subverbs.items()]
    return "\n".join([f"sub-verbs ({PROG} {name} SUB --help):", *rows])


def invoke(prog: str, verb: str, argv: list[str]) -> tuple[int, object]:
    """Run `verb` (with a sub-verb when argv starts with one's name) under the runner."""
    from insid3.engine.cli.runner import run_verb, verb_available

    entry = VERBS[verb]
    if argv and argv[0] in entry.subverbs:
        prog, entry, argv = f"{prog} {argv[0]}", entry.subverbs[argv[0]], argv[1:]
        epilog = None
    else:
        epilog = subverbs_epilog(verb, entry) if entry.subverbs else None
    if not verb_available(entry.target):
        print(f"{prog}: not available in this version", file=sys.stderr)
        return 2, None
    return run_verb(prog, entry.target, argv, epilog=epilog)


def run_command(prog: str, verb: str, argv: list[str] | None) -> int:
    """In-process: one verb's exit code (the old commands' `main(argv)` call this)."""
    try:
        return invoke(prog, verb, list(sys.argv[1:] if argv is None else argv))[0]
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def console_exit(code: int, args: object) -> None:
    """End the console process. After a --ray run at once (os._exit, stdio flushed): Ray's
    background threads can outlive ray.shutdown() and end the process with their own code."""
    if getattr(args, "ray", False):
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """`insid3 <verb> ...` (the console script when argv is None)."""
    console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = PROG
    if argv[:1] == ["--debug"] and len(argv) > 1:  # `insid3 --debug segment ...`: the verb's flag
        argv = [argv[1], "--debug", *argv[2:]]
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(usage(), file=sys.stdout if argv else sys.stderr)
            return 0 if argv else 2
        if argv[0] == "--version":
            from insid3 import __version__

            print(f"{PROG} {__version__}")
            return 0
        if argv[0] not in VERBS:
            print(f"{PROG}: error: unknown verb {argv[0]!r}: choose one of {', '.join(VERBS)} ({PROG} --help)",
                  file=sys.stderr)
            return 2
        prog = f"{PROG} {argv[0]}"
        code, args = invoke(prog, argv[0], argv[1:])
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    if console:
        console_exit(code, args)
    return code


def alias(verb: str) -> Callable[[], int]:
    """The console script `insid3-<verb>`: the verb, under its old name."""

    def command() -> int:
        prog = f"insid3-{verb}"
        try:
            code, args = invoke(prog, verb, sys.argv[1:])
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            return 130
        console_exit(code, args)
        return code

    command.__name__ = f"insid3_{verb}"
    return command


insid3_export = alias("export")
insid3_segment = alias("segment")
insid3_match = alias("match")
insid3_serve = alias("serve")
insid3_eval = alias("eval")
insid3_bench = alias("bench")
insid3_demo = alias("demo")

if __name__ == "__main__":
    sys.exit(main())
