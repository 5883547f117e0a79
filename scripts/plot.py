#!/usr/bin/env python3
"""Draws docs/benchmarks.svg from a benchmark run: refresh time and
propagation latency against registry size. No dependencies.

    python3 scripts/plot.py target/bench docs/benchmarks.svg

Reads criterion's estimates ($CARGO_TARGET_DIR/criterion/refresh/..., by
default target/criterion/...) and the propagation bench's output
(<bench dir>/propagation.txt)."""
import json
import os
import re
import sys
from pathlib import Path

bench_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
SIZES = [100, 1000, 10000]


def criterion_ms(name, size):
    f = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion/refresh" / name / str(size) / "new/estimates.json"
    return json.loads(f.read_text())["mean"]["point_estimate"] / 1e6 if f.exists() else None


def to_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)\s*(ns|µs|us|ms|s)", text).groups()
    return float(value) * {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


refresh = {
    "raw HGETALL (baseline)": [criterion_ms("raw_hgetall", s) for s in SIZES],
    "gosd, after one Go write (whole read)": [criterion_ms("gosd_after_a_go_write", s) for s in SIZES],
    "gosd, after one change (from the log)": [criterion_ms("gosd_after_one_change", s) for s in SIZES],
    "gosd, unchanged (1 command)": [criterion_ms("gosd_unchanged", s) for s in SIZES],
}
sweep = {}
for line in (bench_dir / "propagation.txt").read_text().splitlines():
    m = re.search(r"sweep: registry=(\d+).*p50=\s*([\d.]+\s*\S+)\s+p99=\s*([\d.]+\s*\S+)", line)
    if m:
        sweep[int(m.group(1))] = (to_ms(m.group(2)), to_ms(m.group(3)))
sweep_sizes = sorted(sweep)
propagation = {
    "gosd p99": [sweep[s][1] for s in sweep_sizes],
    "gosd p50": [sweep[s][0] for s in sweep_sizes],
}

COLORS = ["#2d5bd7", "#d9480f", "#2b8a3e", "#7048e8"]
W, H, PAD = 440, 300, 56


def panel(x0, title, xlabels, series, ylabel):
    top = max(v for vs in series.values() for v in vs if v is not None) * 1.15
    px = lambda i: x0 + PAD + i * (W - PAD - 20) / max(1, len(xlabels) - 1)
    py = lambda v: 40 + (H - 40 - PAD) * (1 - v / top)
    parts = [f'<text x="{x0 + W / 2}" y="22" text-anchor="middle" class="title">{title}</text>']
    for k in range(5):
        v = top * k / 4
        parts.append(f'<line x1="{x0 + PAD}" x2="{x0 + W - 20}" y1="{py(v):.1f}" y2="{py(v):.1f}" class="grid"/>')
        parts.append(f'<text x="{x0 + PAD - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for i, label in enumerate(xlabels):
        parts.append(f'<text x="{px(i):.1f}" y="{H - PAD + 18}" text-anchor="middle">{label}</text>')
    parts.append(f'<text x="{x0 + W / 2}" y="{H - 14}" text-anchor="middle">registry size (instances)</text>')
    parts.append(f'<text transform="translate({x0 + 14},{H / 2}) rotate(-90)" text-anchor="middle">{ylabel}</text>')
    for n, (name, values) in enumerate(series.items()):
        points = [(px(i), py(v)) for i, v in enumerate(values) if v is not None]
        color = COLORS[n % len(COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2.5" points="'
                     + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>' for x, y in points]
        parts.append(f'<rect x="{x0 + PAD + 8}" y="{44 + 18 * n}" width="12" height="3" fill="{color}"/>')
        parts.append(f'<text x="{x0 + PAD + 26}" y="{49 + 18 * n}">{name}</text>')
    return "\n".join(parts)


svg = f"""<svg xmlns="http://www.w3.org/2000/svg" width="{2 * W + 20}" height="{H}" viewBox="0 0 {2 * W + 20} {H}"
  font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="12" fill="#17181c">
<style>.title {{ font-size: 14px; font-weight: 600; }} .grid {{ stroke: #e4e6eb; }}</style>
<rect width="100%" height="100%" fill="#ffffff"/>
{panel(0, "Refresh time (mean)", [f"{s:,}" for s in SIZES], refresh, "milliseconds")}
{panel(W + 20, "Propagation: register to 1 client table", [f"{s:,}" for s in sweep_sizes], propagation, "milliseconds")}
</svg>
"""
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(svg)
print(f"wrote {out}")
