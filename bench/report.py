"""The machine, the table printed at the end, and the JSON results."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psycopg

from .stats import ratio

RESULTS = Path(__file__).resolve().parent / "results"


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) \
        else "unknown"


def machine(database_url: str) -> dict[str, Any]:
    cpu = "unknown"
    memory_gib = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("select current_setting('server_version'), "
                           "current_setting('shared_buffers')").fetchone()
    assert row is not None
    commit = _first_line(["git", "rev-parse", "--short", "HEAD"])
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=False).stdout.strip())
    return {
        "cores": os.cpu_count(), "cpu": cpu, "memory_gib": memory_gib,
        "postgresql": row[0], "shared_buffers": row[1],
        "python": platform.python_version(), "os": platform.platform(terse=True),
        "wrk": _first_line(["wrk", "--version"]).split(" [")[0],
        "pgbench": _first_line(["pgbench", "--version"]),
        "commit": commit + ("+changes" if dirty else ""),
    }


READS = ("get_like_group", "my_like_groups")


def comparisons(sizes: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per call and size: gateway over floor, gateway and floor over direct (simple
    and prepared) in calls/s; per call: p50 at the largest size over p50 at the
    smallest."""
    labels = list(sizes)
    out: dict[str, dict[str, Any]] = {}
    for label in labels:
        for name, c in sizes[label]["calls"].items():
            row = out.setdefault(name, {})
            gw = c.get("gateway", {}).get("calls_s")
            floor = c.get("floor", {}).get("calls_s")
            for key, value in (("direct", c["direct"]["calls_s"]),
                               ("direct_prepared", c.get("direct_prepared", {}).get("calls_s"))):
                row[f"gateway_over_{key}_{label}"] = ratio(gw, value)
                row[f"floor_over_{key}_{label}"] = ratio(floor, value)
            row[f"gateway_over_floor_{label}"] = ratio(gw, floor)
    if len(labels) >= 2:
        small, big = labels[0], labels[-1]
        for name in out:
            a, b = sizes[small]["calls"].get(name), sizes[big]["calls"].get(name)
            if a and b:
                for mode in ("direct", "gateway"):
                    if mode in a and mode in b:
                        out[name][f"p50_{big}_over_{small}_{mode}"] = ratio(
                            b[mode]["p50_ms"], a[mode]["p50_ms"])
    return out


def targets(sizes: dict[str, dict[str, Any]], comp: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, each with the worst value measured and whether it is met."""
    floor = [v for c in comp.values() for k, v in c.items()
             if k.startswith("gateway_over_floor") and v is not None]
    reads = [v for name, c in comp.items() if name in READS for k, v in c.items()
             if k.startswith("gateway_over_direct_prepared") and v is not None]
    growth = [v for c in comp.values() for k, v in c.items() if k.startswith("p50_") and v]
    tail = [c["half_load"]["p99_over_p50"] for s in sizes.values() for c in s["calls"].values()
            if c.get("half_load") and c["half_load"].get("p99_over_p50")]
    bursts = [b["gateway"] for s in sizes.values() if (b := s.get("burst"))]
    burst_bad = [int(not r["exactly_seats"]) + r["server_errors"] + r["connection_errors"]
                 for r in bursts]
    return {
        "gateway_over_floor >= 0.95": _target(min(floor, default=None), lambda v: v >= 0.95),
        "reads_gateway_over_direct_prepared >= 0.6": _target(min(reads, default=None),
                                                             lambda v: v >= 0.6),
        "half_load_p99_over_p50 <= 3": _target(max(tail, default=None), lambda v: v <= 3),
        "p50_1M_over_10k <= 1.3": _target(max(growth, default=None), lambda v: v <= 1.3),
        "burst_exact_seats_no_5xx_no_connection_error": _target(
            max(burst_bad, default=None), lambda v: v == 0),
    }


def _target(worst: float | None, test: Any) -> dict[str, Any]:
    return {"worst": worst, "met": None if worst is None else bool(test(worst))}


def _rows(result_sizes: dict[str, dict[str, Any]], comp: dict[str, dict[str, Any]]
          ) -> list[list[str]]:
    labels = list(result_sizes)
    rows = []
    for name in comp:
        for label in labels:
            c = result_sizes[label]["calls"].get(name)
            if not c:
                continue
            d, p = c["direct"], c.get("direct_prepared") or {}
            f, g, h = c.get("floor") or {}, c.get("gateway") or {}, c.get("half_load") or {}
            growth = ""
            if label == labels[-1] and len(labels) > 1:
                growth = (f"{_fmt(comp[name].get(f'p50_{label}_over_{labels[0]}_direct'))}, "
                          f"{_fmt(comp[name].get(f'p50_{label}_over_{labels[0]}_gateway'))}")
            r = comp[name]
            rows.append([
                name, label, f"{d['calls_s']:.0f}", _num(p.get("calls_s")),
                _num(f.get("calls_s")), _num(g.get("calls_s")),
                _fmt(r.get(f"gateway_over_floor_{label}")),
                f"{_fmt(r.get(f'gateway_over_direct_{label}'))}, "
                f"{_fmt(r.get(f'gateway_over_direct_prepared_{label}'))}",
                f"{_fmt(r.get(f'floor_over_direct_{label}'))}, "
                f"{_fmt(r.get(f'floor_over_direct_prepared_{label}'))}",
                f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f}",
                f"{g.get('p50_ms', 0):.1f} / {g.get('p99_ms', 0):.1f}" if g else "-",
                f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f}" if h else "-",
                growth])
    return rows


HEADER = ["call", "size", "direct/s", "prepared/s", "floor/s", "gateway/s", "gw/floor",
          "gw/direct, /prepared", "floor/direct, /prepared", "direct p50/p99 ms",
          "gateway p50/p99 ms", "half load p50/p99 ms", "p50 1M/10k direct, gateway"]


def table(sizes: dict[str, dict[str, Any]], comp: dict[str, dict[str, Any]]) -> str:
    rows = [HEADER, *_rows(sizes, comp)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(v.rjust(w) if i > 1 else v.ljust(w)
                       for i, (v, w) in enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def compact_json(value: Any, depth: int = 0) -> str:
    """JSON with one line per object or list that holds no object or list."""
    pad = "  " * (depth + 1)
    if isinstance(value, dict) and any(isinstance(v, dict | list) for v in value.values()):
        items = [f"{pad}{json.dumps(k)}: {compact_json(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        items = [pad + compact_json(v, depth + 1) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + "  " * depth + "]"
    return json.dumps(value)


def burst_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for label, sized in result["sizes"].items():
        for where, r in (sized.get("burst") or {}).items():
            lines.append(
                f"- Burst at {label}, {where}: {r['users']} users within "
                f"{BURST_WINDOW}, {r['seats']} seats: {r['registered']} registered, answers "
                f"{r['statuses']}, {r['server_errors']} 5xx, {r['connection_errors']} connection "
                f"errors; last answer after {r['last_answer_s']:.2f} s, p50 {r['p50_ms']:.0f} ms, "
                f"p99 {r['p99_ms']:.0f} ms.")
    return lines


BURST_WINDOW = "about 1 s"


def one_client_lines(result: dict[str, Any]) -> list[str]:
    """p99/p50 of one client alone, beside the half-load one."""
    lines = []
    for label, sized in result["sizes"].items():
        cells = []
        for name, c in sized["calls"].items():
            one, half = c.get("one_client") or {}, c.get("half_load") or {}
            if not one:
                continue
            alone = ", ".join(f"{where} {r['p50_ms']:.2f}/{r['p99_ms']:.2f} ms "
                              f"({_fmt(r['p99_over_p50'])})" for where, r in one.items())
            cells.append(f"{name}: {alone}; half load {_fmt(half.get('p99_over_p50'))}")
        if cells:
            lines.append(f"- One client alone at {label}, p50/p99 (p99/p50): "
                         + "; ".join(cells) + ".")
    return lines


def markdown(result: dict[str, Any]) -> str:
    """The results table and machine, for bench/README.md."""
    m = result["machine"]
    st = result["settings"]
    lines = [
        f"Measured {result['date']} on {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, "
        f"PostgreSQL {m['postgresql'].split()[0]}, Python {m['python']}, commit {m['commit']}; "
        f"{st['clients']} clients, {st['gateway_workers']} workers, {st['seconds']} s per run, "
        f"whole run {result['elapsed_seconds']} s.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|---|---|" + "---:|" * (len(HEADER) - 2),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(result["sizes"], result["comparisons"])]
    lines.append("")
    lines += burst_lines(result)
    lines += one_client_lines(result)
    for label, sized in result["sizes"].items():
        b = sized.get("baseline")
        if b:
            lines.append(
                f"- Baseline join at {label}: {b['join']['calls_s']:.0f}/s (ours "
                f"{sized['calls'].get('join_group', {}).get('gateway', {}).get('calls_s', 0):.0f}/s"
                f"). Race, 40 users on a max_uses = 5 code, joins let through per round: "
                f"ours {b['race']['ours_joined']}, baseline {b['race']['baseline_joined']}.")
    for name, target in result["targets"].items():
        met = {True: "met", False: "not met", None: "-"}[target["met"]]
        lines.append(f"- Target {name}: worst {target['worst']} ({met}).")
    return "\n".join(lines) + "\n"


def across_runs(results: list[dict[str, Any]]) -> str:
    """Each target's worst value in each run, side by side."""
    lines = ["| target | " + " | ".join(f"run {n + 1}" for n in range(len(results))) + " |",
             "|---|" + "---:|" * len(results)]
    for name in results[0]["targets"]:
        cells = []
        for r in results:
            t = r["targets"][name]
            met = {True: "met", False: "not met", None: "-"}[t["met"]]
            cells.append(f"{t['worst']} ({met})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_readme(results: list[dict[str, Any]]) -> None:
    readme = Path(__file__).resolve().parent / "README.md"
    marker = "<!-- results -->"
    text = readme.read_text()
    if marker not in text:
        return
    body = ""
    if len(results) > 1:
        body = (f"{len(results)} runs in a row on the same data; the targets in each "
                f"(worst value measured):\n\n{across_runs(results)}\nThe last run:\n\n")
    readme.write_text(text.split(marker)[0] + marker + "\n\n" + body + markdown(results[-1]))


def write(result: dict[str, Any], suffix: str = "") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = compact_json(result) + "\n"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}{suffix}.json").write_text(text)
    latest = RESULTS / "latest.json"
    latest.write_text(text)
    return latest
