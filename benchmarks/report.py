"""The benchmark's report: the JSON contract, the terminal table and the markdown (its files
written by the one report writer, writer.py).

JSON shape (other tools read it; tests/bench/test_bench_cli.py checks it):
{"environment": {...}, "config": {"size", "resolution", "backend", "precision", "shots", ...},
 "ours": {"fps", "latency_ms": {"p50", "p90", "p99", "mean"}, "stages_ms": {<7 stages>},
          "peak_memory_mb", "reference_encode_ms", "cold_start_ms", "by_batch_size": {"1": {"fps"}}, ...},
 "reference": {"fps", "latency_ms", "stages_ms", "peak_memory_mb", ...} | null,
 "speedup": float | null, "mask_mean_iou_vs_reference": float | null, "paper_fps": 3.31, ...}
"""

from __future__ import annotations

from insid3.benchmarks.authors_side import DESCRIPTION, AuthorsResult
from insid3.benchmarks.ours import OursResult
from insid3.benchmarks.stats import mean_iou
from insid3.benchmarks.writer import table
from insid3.engine.runtime.timing import STAGES

PAPER_FPS = 3.31
PAPER_NOTE = (
    "the authors' figure from the paper (ViT-L/16, 1024 px, their PyTorch code on their GPU); "
    "not measured here"
)
DECIMALS = 2  # every number the table and the markdown print


def ours_json(result: OursResult) -> dict:
    return {
        **result.summary,
        "peak_memory_mb": result.memory.peak_mb,
        "memory": result.memory.to_json(),
        "reference_encode_ms": result.reference_encode_ms,
        "cold_start_ms": result.cold_start_ms,
        "by_batch_size": result.by_batch_size,
        "backend": result.backend,
        "mask_mean_iou_vs_fp32": result.mask_mean_iou_vs_fp32,
    }


def authors_json(result: AuthorsResult) -> dict:
    return {
        **result.summary,
        "peak_memory_mb": result.memory.peak_mb,
        "memory": result.memory.to_json(),
        "cold_start_ms": result.cold_start_ms,
        "device": result.device,
        "what": DESCRIPTION,
    }


def build_report(
    environment: dict, config: dict, ours: OursResult, authors: AuthorsResult | None, roofline: dict
) -> dict:
    return {
        "environment": {**environment, "backend": ours.backend},
        "config": config,
        "ours": ours_json(ours),
        "reference": authors_json(authors) if authors else None,
        "speedup": ours.summary["fps"] / authors.summary["fps"] if authors else None,
        "mask_mean_iou_vs_reference": mean_iou(ours.masks, authors.masks) if authors else None,
        "paper_fps": PAPER_FPS,
        "paper_note": PAPER_NOTE,
        "roofline": roofline,
    }


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.{DECIMALS}f}"


def comparison_rows(report: dict) -> list[tuple[str, str, str]]:
    """(what, ours, authors' way) rows: the one table both the terminal and markdown show."""
    ours, ref = report["ours"], report["reference"] or {}
    ref_latency, ref_stages = ref.get("latency_ms", {}), ref.get("stages_ms", {})
    rows = [(f"{stage} (ms)", _number(ours["stages_ms"][stage]), _number(ref_stages.get(stage))) for stage in STAGES]
    rows += [
        (f"latency {q} (ms)", _number(ours["latency_ms"][q]), _number(ref_latency.get(q)))
        for q in ("p50", "p90", "p99", "mean")
    ]
    rows += [
        ("throughput (targets/s)", _number(ours["fps"]), _number(ref.get("fps"))),
        ("peak memory (MB)", _number(ours["peak_memory_mb"]), _number(ref.get("peak_memory_mb"))),
        ("cold start (ms)", _number(ours["cold_start_ms"]), _number(ref.get("cold_start_ms"))),
        ("reference encode, once (ms)", _number(ours["reference_encode_ms"]), "every target"),
    ]
    rows += [
        (f"batch {size} (targets/s)", _number(entry["fps"]), "-") for size, entry in ours["by_batch_size"].items()
    ]
    return rows


def headline(report: dict) -> list[str]:
    config, ours, roof = report["config"], report["ours"], report["roofline"]
    lines = [
        f"{config['arch']} ({config['size']}) @ {config['resolution']} px, backend {config['backend']} "
        f"({ours['backend']['device']}, {config['precision']}), {config['shots']} shot(s), "
        f"{config['targets']} target(s) x {config['iters']} pass(es) after {config['warmup']} warm-up call(s)",
        f"inputs: {config['inputs']}",
        f"memory: {ours['memory']['kind']}",
    ]
    if report["reference"]:
        lines.append(f"authors' way: {report['reference']['what']}")
        lines.append(
            "method: each side in its own process, measured passes interleaved (ABBA), "
            "throughput = median over passes"
        )
        if config["precision"] != "fp32":
            lines.append(
                f"note: ours runs the backbone in {config['precision']}, the authors' way in fp32: "
                "the speed-up includes the precision change"
            )
        lines.append(
            f"speed-up (targets/s, median of passes): {_number(report['speedup'])}x; "
            f"mask mean IoU vs authors' way: {report['mask_mean_iou_vs_reference']:.4f}"
        )
    if ours["mask_mean_iou_vs_fp32"] is not None:
        lines.append(f"mask mean IoU, {config['precision']} vs fp32 (same backend): {ours['mask_mean_iou_vs_fp32']:.4f}")
    lines.append(f"paper: {PAPER_FPS} FPS - {PAPER_NOTE}")
    floor = roof["floor_ms"]
    lines.append(
        f"backbone: {roof['backbone_gflops_per_image']:.1f} GFLOP/image; "
        + (
            f"floor at {roof['peak_tflops']} TFLOP/s dense bf16 ({roof['device']}): {floor:.3f} ms, "
            f"measured backbone reaches {100 * roof['fraction_of_peak']:.1f}% of peak"
            if floor is not None and roof["fraction_of_peak"] is not None
            else "device peak unknown here (CPU or unlisted GPU): no floor"
        )
    )
    return lines


def terminal_table(report: dict) -> str:
    rows = [("", "ours", "authors' way")] + comparison_rows(report)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    body = [f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    return "\n".join(headline(report) + [""] + body)


def markdown(report: dict) -> str:
    lines = ["# insid3-bench", ""] + [f"- {line}" for line in headline(report)] + [""]
    lines += table(("measure", "ours", "authors' way"), comparison_rows(report), "lrr")
    env = report["environment"]
    load = env["load_average"]
    lines += ["", f"Environment: {env['cpu']} ({env['cpu_count']} CPUs; {', '.join(env['cpu_features']) or '-'}), "
              f"GPU {env['gpu'] or 'none'}, driver {env['driver'] or '-'}, CUDA {env['cuda'] or '-'}, "
              f"Python {env['python']}; load average (1/5/15 min) {load['start']} at start, {load['end']} at end.",
              ""]
    return "\n".join(lines)


def parse_markdown_table(text: str) -> dict[str, tuple[str, str]]:
    """{measure: (ours, authors' way)} read back from `markdown`'s table (for checks and tools)."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 3 and cells[0] != "measure":
            rows[cells[0]] = (cells[1], cells[2])
    return rows
