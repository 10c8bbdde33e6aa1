"""Turn one dev/bench run's JSON files into the headline tables of BENCHMARKS.md.

    python3 dev/bench_report.py [--dir bench] [--benchmarks BENCHMARKS.md]

Reads what the run wrote under --dir (each file optional, a missing one is
named in the output, never invented):

  results.json            flashsale-bench: baselines and our pipeline, the sweep
  kstreams/results.json   the same bench over the Kafka Streams peer (dev/bench-kstreams)
  kstreams-alo/results.json   the same with the peer at at_least_once (reference)
  ceiling.json            flashsale-broker-ceiling
  restore.json            flashsale-restore-bench --system all

and writes --dir/summary.md, then replaces the part of --benchmarks between
the `<!-- bench-summary:start -->` and `<!-- bench-summary:end -->` markers
with the same text, so the page's figures are always those of one run.
Ratios are ours / theirs: above 1 for throughput is ours faster, below 1
for latency and CPU is ours cheaper.
"""

import argparse
import json
import pathlib
import sys

START = "<!-- bench-summary:start -->"
END = "<!-- bench-summary:end -->"
OURS = "pipeline"


def load(path):
    """The JSON at path, or None when the run did not write it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def fmt(value, digits=1):
    """A figure for a table cell; '–' for a missing one."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def ratio(ours, theirs, digits=2):
    """ours / theirs as text, '–' when either is missing or theirs is 0."""
    if ours is None or not theirs:
        return "–"
    return f"{ours / theirs:.{digits}f}×"


def scenario_rows(results):
    """One row per (scenario, system) of flashsale-bench's results."""
    rows = []
    for r in results:
        rep, lat, cost = r["report"], r["report"]["latency_ms"], r.get("cost") or {}
        rss = max((p.get("rss_peak_mb") or 0 for p in cost.get("processes", {}).values()), default=None)
        rows.append((
            r["scenario"], r["system"], fmt(rep["throughput_rps"], 0),
            fmt(lat["p50"]), fmt(lat["p90"]), fmt(lat["p99"]), fmt(lat.get("p99_9")), fmt(lat["max"]),
            f'{r["oversold_units_by_answers"]} / {r["oversold_units_by_orders"]}',
            fmt(r["unsold_units_with_excess_demand"]),
            f'{rep["accepted_units"]} / {r["stored_units"]}',
            fmt(cost.get("cpu_s_per_1k_requests"), 3), fmt(cost.get("system_cpu_s_per_1k_requests"), 3),
            fmt(cost.get("stores_cpu_s_per_1k_requests"), 3), fmt(rss, 0),
        ))
    return rows


def describe(machine):
    """One line about the machine a run was measured on."""
    if isinstance(machine, str):
        return machine
    return (f'{machine.get("cpus", "?")} cores ({machine.get("cpu_model", "?")}), '
            f'{machine.get("memory_gib", "?")} GiB, load average {machine.get("loadavg_at_start", "?")} '
            f'at the start and {machine.get("loadavg_at_end", "?")} at the end')


def table(header, rows):
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def by_key(results):
    """results indexed by (scenario, system)."""
    return {(r["scenario"], r["system"]): r for r in results}


def ratio_rows(results):
    """Ours against every other system, per scenario."""
    index, rows = by_key(results), []
    for (scenario, system), theirs in sorted(index.items()):
        ours = index.get((scenario, OURS))
        if system == OURS or ours is None:
            continue
        o, t = ours["report"], theirs["report"]
        oc, tc = ours.get("cost") or {}, theirs.get("cost") or {}
        rows.append((
            scenario, f"{OURS} ÷ {system}",
            ratio(o["throughput_rps"], t["throughput_rps"]),
            ratio(o["latency_ms"]["p50"], t["latency_ms"]["p50"]),
            ratio(o["latency_ms"]["p99"], t["latency_ms"]["p99"]),
            ratio(oc.get("cpu_s_per_1k_requests"), tc.get("cpu_s_per_1k_requests")),
        ))
    return rows


def sweep_rows(sweeps):
    """Highest sustainable rate and the half-rate step of every swept system."""
    rows = []
    for system, s in sweeps.items():
        half = s.get("half_rate") or {}
        best = s.get("highest_sustainable_rps")
        bound = "≥ " if s.get("highest_is_lower_bound") else ""
        rows.append((
            system, f"{bound}{fmt(best, 0)}" if best is not None else "–", s.get("stop_reason") or "–",
            fmt(half.get("offered_rps"), 0), fmt(half.get("p50_ms")), fmt(half.get("p99_ms")),
        ))
    return rows


def ceiling_lines(ceiling, results):
    """The broker's ceiling, and our large-scenario throughput against it."""
    if ceiling is None:
        return ["*No ceiling.json in this run.*"]
    rows = [(v["variant"], fmt(v.get("produce_rps"), 0), fmt(v.get("consume_rps"), 0),
             fmt(v.get("e2e_p50_ms")), fmt(v.get("e2e_p99_ms"))) for v in ceiling.get("variants", [])]
    lines = [f'Records of our request size: {ceiling.get("record_bytes")} B value, '
             f'{ceiling.get("key_bytes")} B key, {fmt(ceiling.get("records"))} per phase.', ""]
    lines += table(["variant", "produce rec/s", "consume rec/s", "e2e p50 ms", "e2e p99 ms"], rows)
    ours = by_key(results).get(("large", OURS))
    pipeline = next((v for v in ceiling.get("variants", []) if v["variant"] == "pipeline"), None)
    if ours and pipeline:
        lines += ["", f'Our pipeline\'s `large` throughput ÷ the broker\'s produce ceiling (our settings): '
                  f'{ratio(ours["report"]["throughput_rps"], pipeline.get("produce_rps"), 3)}.']
    return lines


def restore_lines(restore, ceiling):
    """Kill-to-decide times of ours and the Kafka Streams peer."""
    if restore is None:
        return ["*No restore.json in this run.*"]
    systems = restore.get("results") or []
    for s in systems:
        if s.get("decide_s"):
            s["decide_rps"] = s["records"] / s["decide_s"]
    rows = [(s.get("system"), fmt(s.get("records")), fmt(s.get("kill_to_probe_outcome_ms"), 0),
             fmt(s.get("handover_ms"), 0), fmt(s.get("restore_ms"), 0), fmt(s.get("restore_records")),
             fmt(s.get("decide_rps"), 0)) for s in systems]
    lines = [f'Build: {restore.get("bench_build", "?")}; {fmt(restore.get("records"))} purchase requests for '
             f'{fmt(restore.get("products"))} products in partition 0.', ""]
    lines += table(["system", "records", "SIGKILL → partition decides again, ms", "handover ms",
                    "restore ms", "records restored", "first decide, records/s (start-up included)"], rows)
    whole = next((s.get("whole_log_restore_ms") for s in systems if s.get("whole_log_restore_ms")), None)
    if whole:
        lines += ["", f"Ours, restoring by replaying the whole log instead of from a snapshot: {fmt(whole, 0)} ms."]
    pipeline = next((v for v in (ceiling or {}).get("variants", []) if v["variant"] == "pipeline"), None)
    ours = next((s for s in systems if s.get("system") == "ours"), None)
    if pipeline and ours and ours.get("decide_rps"):
        lines += ["", f'Our processor alone (records already in the topic: decide, produce, commit) ÷ the '
                  f'broker\'s produce ceiling: {ratio(ours["decide_rps"], pipeline.get("produce_rps"), 3)}.']
    return lines


def summary(run_dir):
    """The Markdown summary of the run in run_dir."""
    bench = load(run_dir / "results.json")
    if bench is None:
        sys.exit(f"{run_dir / 'results.json'} is missing: run dev/bench first")
    kstreams = load(run_dir / "kstreams" / "results.json")
    results = list(bench["results"])
    sweeps = dict(bench.get("sweep") or {})
    for extra in (kstreams, load(run_dir / "kstreams-alo" / "results.json")):
        if extra is not None:
            results += extra["results"]
            sweeps.update(extra.get("sweep") or {})
    machine = bench.get("machine") or {}
    lines = [f'Run `{bench.get("run", "?")}` on {describe(machine)}. Compare figures within this run only.', "",
             "### Scenarios", ""]
    lines += table(["scenario", "system", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms",
                    "oversold (answers / orders)", "unsold", "accepted / persisted units",
                    "CPU s / 1k req", "own", "stores", "peak RSS MiB (largest process)"],
                   scenario_rows(results))
    lines += ["", "### Ours against each", ""]
    lines += table(["scenario", "ratio", "throughput", "p50", "p99", "CPU / 1k"], ratio_rows(results))
    lines += ["", "### Open-loop sweep (p99 ≤ 100 ms)", ""]
    lines += table(["system", "highest sustainable req/s", "stopped by", "half rate req/s",
                    "p50 ms there", "p99 ms there"], sweep_rows(sweeps)) if sweeps else ["*No sweep in this run.*"]
    lines += ["", "### The broker's ceiling", ""] + ceiling_lines(load(run_dir / "ceiling.json"), results)
    lines += ["", "### Restore after SIGKILL", ""] + restore_lines(load(run_dir / "restore.json"),
                                                                   load(run_dir / "ceiling.json"))
    if kstreams is None:
        lines += ["", "*No kstreams/results.json in this run: the pipeline over the Kafka Streams peer was not run.*"]
    return "\n".join(lines) + "\n"


def splice(page, text):
    """page with the text between the markers replaced by text."""
    head, sep, rest = page.partition(START)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        sys.exit(f"BENCHMARKS.md has no {START} ... {END} section")
    return f"{head}{START}\n{text}{END}{tail}"


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--dir", default="bench", type=pathlib.Path)
    args.add_argument("--benchmarks", default="BENCHMARKS.md", type=pathlib.Path)
    opts = args.parse_args()
    text = summary(opts.dir)
    (opts.dir / "summary.md").write_text(text)
    opts.benchmarks.write_text(splice(opts.benchmarks.read_text(), text))
    print(text)


if __name__ == "__main__":
    main()
