"""What `venue bench e2e` leaves behind under `bench/results/`: JSON, PNG plots, Markdown.

One run writes `e2e-<time>.json` (the environment, every parameter and the whole result),
`e2e-<time>-latency.png` (the acknowledgement and fill latency percentile curves),
`e2e-<time>-throughput.png` (acknowledged actions and book messages per second over the
run; with `--max`, also the sweep) and `e2e-<time>.md`, a short report that links them;
with `--profile`, also `e2e-<time>-profile.svg` (a flame graph of the server) and
`e2e-<time>-profile.md` (its top functions by self time), from `bench.profiling`.
Plots need matplotlib (the `bench` extra); without it the PNGs are skipped and the report
says so.
"""

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from bench import environment, profiling, server_process
from cli.failures import CommandFailed

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PLOT_DPI = 110


def check_out(out: Path) -> None:
    """Make the results directory `out` and prove a file can be written there, before a run
    whose files are written only at its end: else a run of minutes (a `--max` sweep, every
    part of `venue bench all`) ended in an error and left nothing."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".venue-bench-probe-"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        if isinstance(error, FileExistsError):  # mkdir's word for a file of that name
            reason = "a file, not a directory"
        raise CommandFailed(f"--out {out}: cannot write the results there ({reason})") from None


def write(
    report: dict[str, Any], out: Path, profile: profiling.Profile | None = None
) -> list[Path]:
    """Write the result files (and the profile's, if there is one); return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    base = environment.free_base(out, f"e2e-{environment.stamp(report['created_utc'])}")
    json_path = base.with_suffix(".json")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    plots = _plots(report["result"], base)
    profiled = []
    if profile is not None:
        title = _title(report["result"], f"server profile ({profile.method})")
        profiled = profiling.write(profile, base, title)
    markdown = base.with_suffix(".md")
    markdown.write_text(markdown_report(report, [p.name for p in plots], profiled))
    return [json_path, *plots, *profiled, markdown]


def summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    ack, fill = result["ack_latency_us"], result["fill_latency_us"]
    parameters = result["parameters"]
    lines = [
        f"e2e: {result['acked_per_sec']:,} order actions/s acknowledged "
        f"({result['acked']:,} of {result['sent']:,} sent; {result['rejected']:,} rejected, "
        f"{result['unanswered']:,} unanswered) of {parameters['offered_per_sec']:,.0f}/s offered: "
        f"{marketable_share(parameters):.0%} marketable orders from {parameters['takers']} "
        f"taker(s) (batch {parameters['batch']}), the rest requotes from {parameters['makers']} "
        "maker(s)",
        f"ack latency µs: p50 {ack['p50']:,}  p99 {ack['p99']:,}  p99.9 {ack['p999']:,}  "
        f"max {ack['max']:,}",
        f"fill latency µs: p50 {fill['p50']:,}  p99 {fill['p99']:,}  p99.9 {fill['p999']:,}  "
        f"max {fill['max']:,}  ({result['fills']:,} fills)",
        _market_data(result),
        f"server CPU {result['server_cpu_percent']}%, peak RSS {result['server_rss_mb']} MiB",
        f"server CPU per acked action: {result['server_cpu_us_per_action']} µs"
        + _by_thread(result.get("server_cpu_by_thread")),
        *_calls_by_thread(result.get("server_cpu_by_thread")),
        f"book levels per update: {_levels(result['book_levels_per_update'])}; client CPU % of"
        f" a core: {_listed(result['client_cpu_percent'])} (busiest process "
        f"{result['client_process_cpu_percent_max']}%)",
    ]
    by_process = result.get("server_cpu_percent_by_process")
    if by_process:
        shares = ", ".join(f"{name} {share}%" for name, share in by_process.items())
        lines.append(f"{result['shape']}; CPU by process: {shares}")
    by_gateway = result.get("subscribers_by_gateway")
    if by_gateway:
        lines.append(f"subscribers by gateway: {_listed(by_gateway)}")
    if result["errors"]:
        lines.append(f"errors: {_listed(result['errors'])}")
    lines += _server_trouble(result)
    lines += _cpu_unreliable(result)
    if result.get("mode") == "max":
        lines.append(_sustained(result))
    return "\n".join(lines)


def _market_data(result: dict[str, Any]) -> str:
    """What the subscribers read: book messages (one a symbol's book changed in a
    publication), trade messages and the frames (socket messages) carrying them."""
    parameters = result["parameters"]
    symbols = parameters.get("symbols", 1)  # results before --symbols: one
    line = (
        f"book: {result['book_updates_per_sec']:,} messages/s over {symbols} symbol"
        f"{'' if symbols == 1 else 's'} to {parameters['subscribers']} subscribers "
        f"({result['book_gaps']} gaps); trades: {result['trade_messages_per_sec']:,} messages/s"
    )
    frames = result.get("subscriber_frames_per_sec")
    if frames is not None:
        per_frame = result["client_messages_per_frame"].get("subscriber")
        line += f"; subscribers' frames: {frames:,}/s ({per_frame} messages each)"
    return line


def _listed(figures: dict[str, Any]) -> str:
    """`maker 1.5, taker 0.8`: a mapping as words, not a Python dict's repr."""
    return ", ".join(f"{name} {value}" for name, value in figures.items())


def _levels(per_update: float | None) -> str:
    """Book levels per update, or why there is no figure (it read "None")."""
    return (
        "none sampled (no subscriber read a book message)"
        if per_update is None
        else f"{per_update}"
    )


def _server_trouble(result: dict[str, Any]) -> list[str]:
    """What went wrong with the server, said: the run's status 1 said nothing of why."""
    died = result.get("server_exited_during_run")
    lines = []
    if died is not None:
        lines.append(
            f"server: exited during the run (status {died}); what came after it is missing"
            " from the figures"
        )
    elif not result.get("server_stopped_cleanly", True):
        lines.append("server: did not stop cleanly on SIGTERM")
    if result.get("server_exception"):
        lines.append(f"server logged: {result['server_exception']}")
    return lines


def _cpu_unreliable(result: dict[str, Any]) -> list[str]:
    """A line when the server's CPU figures are too short a window's to trust, saying how far
    off they can be and how long a run would make them reliable (in seconds, not a flag's
    name: `venue bench all` sets it with --e2e-duration)."""
    if result.get("server_cpu_reliable") is not False:
        return []
    error = result.get("server_cpu_error_percent_max")
    duration_s = result["parameters"]["duration_s"]
    reliable_at = server_process.CPU_ERROR_PERCENT_RELIABLE
    tick_ms = server_process.cpu_tick_s() * 1_000
    off = "all of them (no CPU time counted)" if error is None else f"±{error:g}% of them"
    longer = ""
    if error is not None:
        longer = f"; a run of {math.ceil(duration_s * error / reliable_at):g} s or more"
        longer += f" would bring that within ±{reliable_at:g}%"
    return [
        f"server CPU figures unreliable: the kernel counts CPU time in {tick_ms:g} ms ticks,"
        f" which over this {duration_s:g} s window can be {off}{longer}"
    ]


def marketable_share(parameters: dict[str, Any]) -> float:
    """The takers' share of the actions offered. `--taker-share` is of `--rate`, but makers
    requote at a floor rate whatever the rate: at low rates (and with --taker-share 1) their
    floor is added to it, and the takers' share of what was offered is smaller."""
    offered: float = parameters["offered_per_sec"]
    return parameters["rate"] * parameters["taker_share"] / offered if offered else 0.0


def _sustained(result: dict[str, Any]) -> str:
    """The sweep's answer; when even its first step broke a bound, that said, not a rate."""
    bound_ms = result["p99_bound_us"] / 1_000
    rate = result["max_sustained_rate"]
    if rate is None:
        first = result["sweep"][0]
        return (
            f"max sustained rate: none: the first step, {first['rate']:,.0f}/s, broke a bound"
            f" ({first['broke']}); the figures above are that step's (a lower --start-rate?)"
        )
    return (
        f"max sustained rate: {rate:,.0f} actions/s (the highest step within every bound, p99"
        f" at most {bound_ms:g} ms)"
    )


def _by_thread(threads: dict[str, dict[str, Any]] | None) -> str:
    """`; by thread (user + system): loop 150.1 (130.0 + 20.1), journal ...`, the threads
    that used CPU, each whose figures the clock tick can put off by more than
    `server_process.CPU_ERROR_PERCENT_RELIABLE` marked `[±67%: unreliable]`; nothing without
    a reading (a cluster, or off Linux)."""
    busy = {name: cpu for name, cpu in (threads or {}).items() if cpu["us_per_action"]}
    if not busy:
        return ""
    parts = (
        f"{name} {cpu['us_per_action']} ({cpu['user_us_per_action']} + "
        f"{cpu['system_us_per_action']}){_unreliable_mark(cpu)}"
        for name, cpu in busy.items()
    )
    return "; by thread (user + system): " + ", ".join(parts)


def _unreliable_mark(cpu: dict[str, Any]) -> str:
    """` [±67%: unreliable]` after a thread's figures too coarse to trust; "" otherwise (and
    for results written before threads had their own error)."""
    if cpu.get("reliable", True):
        return ""
    error = cpu.get("error_percent_max")
    return f" [±{error:g}%: unreliable]" if error is not None else " [unreliable]"


def _calls_by_thread(threads: dict[str, dict[str, float | None]] | None) -> list[str]:
    """`system calls per acked action (reads + writes; context switches): loop 0.61 + 1.35;
    2.02, ...` for the threads that made any; no line without counts."""
    counted = {
        name: thread
        for name, thread in (threads or {}).items()
        if thread.get("reads_per_action") is not None
        and (
            thread["reads_per_action"]
            or thread["writes_per_action"]
            or thread["switches_per_action"]
        )
    }
    if not counted:
        return []
    parts = (
        f"{name} {thread['reads_per_action']} + {thread['writes_per_action']}; "
        f"{thread['switches_per_action']}"
        for name, thread in counted.items()
    )
    return ["system calls per acked action (reads + writes; context switches): " + ", ".join(parts)]


def markdown_report(
    report: dict[str, Any], plots: list[str], profiled: list[Path] | None = None
) -> str:
    result = report["result"]
    git, machine = report["git"], report["machine"]
    lines = [
        f"# End-to-end benchmark, {report['created_utc']}",
        "",
        f"Commit `{git['commit']}`{' (with local changes)' if git['dirty'] else ''}; "
        f"Python {report['python'].split()[0]}; {machine['processor']}, "
        f"{machine['cpus']} CPUs, {machine['memory_gib']} GiB; {machine['platform']}.",
        "",
        "## Parameters",
        "",
        *(f"- {name}: {value}" for name, value in result["parameters"].items()),
        "",
        "## Results",
        "",
        "```",
        summary(result),
        "```",
        "",
        "| measure | p50 | p90 | p99 | p99.9 | max |",
        "|---|---|---|---|---|---|",
        *(
            _row(label, result[key])
            for label, key in (
                ("acknowledgement (from schedule), µs", "ack_latency_us"),
                ("service (from write), µs", "service_latency_us"),
                ("in the server (t_out - t_in), µs", "server_latency_us"),
                ("fill to client, µs", "fill_latency_us"),
            )
        ),
        "",
    ]
    if result.get("sweep"):
        lines += [
            "## Sweep",
            "",
            "| rate | acked/s | p99 µs | server CPU µs/action | verdict |",
            "|---|---|---|---|---|",
        ]
        for step in result["sweep"]:
            verdict = step["broke"] or "held"
            unreliable = " (unreliable)" if step.get("server_cpu_reliable") is False else ""
            lines.append(
                f"| {step['rate']:,.0f} | {step['acked_per_sec']:,} | "
                f"{step['ack_latency_us']['p99']:,} | {step['server_cpu_us_per_action']}"
                f"{unreliable} | {verdict} |"
            )
        lines.append("")
    if profiled:
        profile = result["profile"]
        lines += ["## Profile", "", f"{profile['note']}.", ""]
        lines += [f"- [{path.name}]({path.name})" for path in profiled] + [""]
    if plots:
        lines += ["## Plots", "", *(f"![{name}]({name})" for name in plots), ""]
    else:
        lines += ["Plots skipped: matplotlib is not installed (`pip install -e '.[bench]'`).", ""]
    return "\n".join(lines)


def _row(label: str, values: dict[str, float]) -> str:
    cells = " | ".join(f"{values[key]:,}" for key in ("p50", "p90", "p99", "p999", "max"))
    return f"| {label} | {cells} |"


def _plots(result: dict[str, Any], base: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display on a server
        from matplotlib import pyplot
    except ImportError:
        return []
    paths = [_latency_plot(pyplot, result, base), _throughput_plot(pyplot, result, base)]
    return paths


def _latency_plot(pyplot: Any, result: dict[str, Any], base: Path) -> Path:
    """Latency against percentile on an axis that stretches the tail (1 / (1 - p))."""
    figure, axes = pyplot.subplots(figsize=(8, 4.5))
    for key, label in (("latency_curve_us", "acknowledgement"), ("fill_curve_us", "fill")):
        points = [(p, v) for p, v in result[key] if p < 100]
        if points:
            axes.plot(
                [1 / (1 - p / 100) for p, _ in points],
                [v / 1_000 for _, v in points],
                marker="o",
                label=label,
            )
    axes.set_xscale("log")
    ticks = [1, 2, 10, 100, 1_000, 10_000, 100_000]
    axes.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency, ms")
    axes.set_title(_title(result, "latency percentiles"))
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return _save(pyplot, figure, base, "latency")


def _throughput_plot(pyplot: Any, result: dict[str, Any], base: Path) -> Path:
    sweep = result.get("sweep")
    figure, panels = pyplot.subplots(2 if sweep else 1, 1, figsize=(8, 7 if sweep else 4))
    axes = panels[0] if sweep else panels
    timeline = result["timeline"]
    bucket = timeline["bucket_s"]
    for key, label in (("acked", "actions acknowledged/s"), ("book_messages", "book messages/s")):
        series = timeline[key]
        if series:
            axes.plot(
                [i * bucket for i in range(len(series))], [n / bucket for n in series], label=label
            )
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("per second")
    axes.set_title(_title(result, "throughput over time"))
    axes.grid(True, alpha=0.3)
    axes.legend()
    if sweep:
        lower = panels[1]
        offered = [step["offered_per_sec"] for step in sweep]
        lower.plot(offered, [step["acked_per_sec"] for step in sweep], marker="o", label="acked/s")
        lower.plot(offered, offered, linestyle=":", label="offered/s")
        lower.set_xlabel("offered order actions/s")
        lower.set_ylabel("acknowledged/s")
        right = lower.twinx()
        right.plot(
            offered,
            [step["ack_latency_us"]["p99"] / 1_000 for step in sweep],
            color="tab:red",
            marker="x",
            label="p99 ms",
        )
        right.set_ylabel("p99 acknowledgement, ms")
        lower.legend(loc="upper left")
        right.legend(loc="lower right")
        lower.grid(True, alpha=0.3)
    figure.tight_layout()
    return _save(pyplot, figure, base, "throughput")


def _title(result: dict[str, Any], what: str) -> str:
    parameters = result["parameters"]
    return (
        f"{what}: {parameters['offered_per_sec']:,.0f} actions/s offered "
        f"({marketable_share(parameters):.0%} takers', batch {parameters['batch']}), "
        f"{parameters['subscribers']} subscribers"
    )


def _save(pyplot: Any, figure: Any, base: Path, name: str) -> Path:
    path = base.parent / f"{base.name}-{name}.png"
    figure.savefig(path, dpi=PLOT_DPI)
    pyplot.close(figure)
    return path
