"""The benchmark: studio-engage and a tutorial-style baseline, side by side, same run.

    bash scripts/bench            # or: .venv/bin/python bench/run.py [--quick]

Every figure comes from real processes on loopback: the app under test, the
peers (fake Studio + response_url sink, bench/peers.py) and the load (Slack-
signed commands, bench/load.py), each its own process. Prints a table with each
figure against its target and the baseline's, and writes bench/results/latest.json.
Targets are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
SECRET = "bench-signing-secret"
FLOW = "FW" + "b" * 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def bot_env(port: int, peers: str, **overrides: str) -> dict[str, str]:
    """The environment of a bot under test on ``port``, wired to ``peers``."""
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "TWILIO_", "STUDIO_"))
        },
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": f"{peers}/api/",
        "TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
        "TWILIO_AUTH_TOKEN": "bench-token",
        "CONSENT_KEY": "bench-consent-key-" + "0" * 32,  # required with REDIS_URL
        "STUDIO_FLOW_SID": FLOW,
        "STUDIO_FROM": "+16175550100",
        "STUDIO_BASE_URL": peers,
        "USER_RATE_LIMIT": "1000000/second",
        "DUPLICATE_WINDOW_SECONDS": "0",
        "SHUTDOWN_GRACE_SECONDS": "5",
        # The start path as before: the card as a reply (the bench peers have no
        # chat.postMessage) and no Flows API checks (they answer 404: checks off).
        "FOLLOW_MINUTES": "0",
        "FLOW_PARAMETER_CHECK": "off",
        # The bench measures throughput, not the contact's clock: at night in Boston its
        # contacts would wait for their morning.
        "QUIET_HOURS": "off",
        **overrides,
    }


def bot_output() -> Any:
    """Where a process under test writes: the file ``BENCH_BOT_LOG`` names (appended, to
    debug a run), else nowhere."""
    log = os.environ.get("BENCH_BOT_LOG")
    return open(log, "ab") if log else subprocess.DEVNULL


def spawn_bot(port: int, env: dict[str, str], *, wait: bool = True) -> subprocess.Popen[bytes]:
    """``python -m bot`` with ``env``, its output dropped; with ``wait``, once ``port``
    takes connections."""
    out = bot_output()
    proc = subprocess.Popen([PY, "-m", "bot"], env=env, cwd=REPO, stdout=out, stderr=out)
    if wait:
        wait_port(port, proc)
    return proc


def wait_port(port: int, proc: subprocess.Popen[bytes], limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise RuntimeError(f"nothing listened on {port}")


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on loopback; yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is missing (scripts/setup --dev installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def command_body(i: int, respond: str) -> str:
    return urlencode(
        {
            "token": "x",
            "team_id": "T0001",
            "team_domain": "bench",
            "channel_id": "C0BENCH",
            "channel_name": "bench",
            "user_id": f"U{i:08d}",
            "user_name": "bench",
            "command": "/engage",
            "text": f"+1617555{i % 10000:04d} first_name=Zeke n:={i}",
            "api_app_id": "A0APP",
            "response_url": f"{respond}/{i}",
            "trigger_id": "1.2.3",
        }
    )


def signed_headers(body: str | bytes, secret: str = SECRET) -> dict[str, str]:
    """A slash command's headers, signed as Slack signs them (the bench's secret)."""
    ts = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def signed_command(url: str, respond: str) -> int:
    """One slash command, signed as Slack signs it, from this process; its status."""
    body = command_body(9_000_000, respond)
    request = urllib.request.Request(
        url, data=body.encode(), headers=signed_headers(body), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def load(
    urls: list[str],
    concurrency: int,
    total: int,
    offset: int,
    respond: str,
    raw: str | None = None,
    waves: int = 0,
    gap: float = 0.5,
) -> dict[str, Any]:
    args = [
        PY,
        str(HERE / "load.py"),
        *(arg for url in urls for arg in ("--url", url)),
        "--concurrency",
        str(concurrency),
        "--total",
        str(total),
        "--offset",
        str(offset),
        "--respond",
        respond,
        "--secret",
        SECRET,
    ]
    if raw:
        args += ["--raw", raw]
    if waves:
        args += ["--waves", str(waves), "--gap", str(gap)]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600)
    return dict(json.loads(out.stdout))


def bench_json(script: str, *args: str) -> dict[str, Any]:
    """Run ``bench/<script>`` and read the one JSON object it prints."""
    done = subprocess.run(
        [PY, str(HERE / script), *args], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rss_peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class App:
    """One app under test, as a process on its own port."""

    def __init__(self, name: str, argv: list[str], peers: str, **env: str) -> None:
        self.name = name
        self.argv = argv
        self.port = free_port()
        # The load is many users at full speed: lift the guardrails' limits.
        self.env = bot_env(self.port, peers, STUDIO_RATE_LIMIT="1000000/second", **env)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def start(self, peers: str) -> float:
        """Start the process; seconds from spawn to its first acknowledged command
        (sent from here the moment the port takes connections)."""
        spawned = time.perf_counter()
        out = bot_output()
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdout=out, stderr=out)
        wait_port(self.port, self.proc)
        while signed_command(self.url, f"{peers}/respond") != 200:
            time.sleep(0.005)
        return time.perf_counter() - spawned

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def scenario(
    apps: App | list[App],
    peers: str,
    latency: float,
    concurrency: int,
    total: int,
    offset: int,
    waves: int = 0,
    expect_replies: bool = True,
) -> dict[str, Any]:
    """``waves``: bursts of ``concurrency`` commands at once; 0: a closed loop (saturation).
    Several apps: the commands take turns between them. ``expect_replies=False``: one that
    only acks (the ceiling); nothing to wait for after the last ack."""
    http("POST", f"{peers}/reset?latency={latency}")
    result = load(
        [app.url for app in (apps if isinstance(apps, list) else [apps])],
        concurrency,
        total,
        offset,
        f"{peers}/respond",
        waves=waves,
        gap=max(0.2, latency + 0.5),
    )
    acked = result["statuses"].get("200", 0)
    deadline = time.monotonic() + (max(30.0, total * latency + 30) if expect_replies else 0)
    while True:
        stats = http("GET", f"{peers}/stats")
        # Only this scenario's commands: a reply to a start-up command may land late.
        replies = [t for n, t in stats["replies"] if offset <= n < offset + total]
        if len(replies) >= acked or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    last = max(replies) if replies else float("nan")
    lat = result["latencies"]
    return {
        "latency_s": latency,
        "concurrency": concurrency,
        "sent": total,
        "acked": acked,
        "reported": len(replies),
        "studio_requests": stats["creates"],
        "ack_p50_ms": percentile(lat, 50) * 1000,
        "ack_p99_ms": percentile(lat, 99) * 1000,
        "ack_max_ms": max(lat) * 1000 if lat else float("nan"),
        "all_reported_s": last - result["started_at"],
        "per_second": len(replies) / (last - result["started_at"]) if replies else 0.0,
        "acks_per_second": acked / (result["finished_at"] - result["started_at"]),
        "errors": {k: v for k, v in result["statuses"].items() if k != "200"},
    }


def import_time(code: str) -> float:
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [
                PY,
                "-c",
                f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)",
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        runs.append(float(out.stdout))
    return statistics.median(runs)


def measure(app: App, peers: str, quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {"startup_s": app.start(peers)}
    grid = []
    offset = 0
    for latency in (0.0, 1.0):
        for concurrency in (1, 50, 200):
            # Bursts of `concurrency` commands arriving at once (1: one after another).
            waves = {1: 10 if quick else 30, 50: 2 if quick else 5, 200: 1}[concurrency]
            total = concurrency * waves
            grid.append(scenario(app, peers, latency, concurrency, total, offset, waves=waves))
            offset += total
    results["grid"] = grid
    # Saturation: 50 clients each sending its next command as soon as the last is acked.
    results["throughput"] = scenario(app, peers, 0.0, 50, 500 if quick else 2000, offset)
    assert app.proc is not None
    results["peak_rss_mib"] = rss_peak_mib(app.proc.pid)
    app.stop()
    return results


def measure_ceiling(peers: str, total: int) -> dict[str, Any]:
    """The stack's own ceiling (bench/ceiling_app.py): start-up and acks per second."""
    app = App("ceiling", [PY, str(HERE / "ceiling_app.py")], peers)
    try:
        startup = app.start(peers)
        # Ten times the commands: at its rate, the bot's count would be over too soon.
        result = scenario(app, peers, 0.0, 50, 10 * total, 0, expect_replies=False)
    finally:
        app.stop()
    return {"startup_s": startup, "throughput": result}


def _guardrail_scripts(url: str) -> int:
    """How many guardrail scripts Redis has run (its commandstats): the use-and-claim
    and the pace each ask Redis's clock (TIME) once, and no other script of the bot's
    does (``tests/test_store.py`` holds that), so TIME's count is theirs."""
    import redis as redis_sync

    stats = redis_sync.Redis.from_url(url).info("commandstats")
    return int(stats.get("cmdstat_time", {}).get("calls", 0))


def measure_shared(peers: str, total: int) -> dict[str, Any]:
    """Saturation with the state in one Redis and the guardrails on (the limits at their
    defaults, except Studio's pace, lifted yet still counted in Redis, and the duplicate
    window at 60 s): one process, then two taking turns."""
    results: dict[str, Any] = {}
    with redis_server() as redis:
        env = {
            "REDIS_URL": redis,
            "USER_RATE_LIMIT": "10/minute",  # each command of the load is another user
            "DUPLICATE_WINDOW_SECONDS": "60",
        }
        # Numbers the other runs and the start-up command never use: no duplicates.
        for key, count, offset in (("one", 1, 20_001), ("two", 2, 22_001)):
            apps = [App(f"{key}-{n}", [PY, "-m", "bot"], peers, **env) for n in range(count)]
            try:
                for app in apps:
                    app.start(peers)
                scripts = _guardrail_scripts(redis)
                results[key] = scenario(apps, peers, 0.0, 50, total, offset)
                started = max(1, results[key]["reported"])
                # the guardrails' scripts: the use and the duplicate claim, then the pace
                trips = _guardrail_scripts(redis) - scripts
                results[key]["guardrail_trips_per_start"] = trips / started
            finally:
                for app in apps:
                    app.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer commands per cell")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    peers_port = free_port()
    peers = f"http://127.0.0.1:{peers_port}"
    peers_proc = subprocess.Popen([PY, str(HERE / "peers.py"), "--port", str(peers_port)])
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "commit": commit(),
        "quick": args.quick,
    }
    try:
        wait_port(peers_port, peers_proc)
        http("POST", f"{peers}/reset?latency=0")
        ceiling = load([f"{peers}/v1/Flows/{FLOW}/Engagements"], 50, 2000, 0, "", raw="form")
        sink = load([f"{peers}/respond/0"], 50, 2000, 0, "", raw="json")

        def span(result: dict[str, Any]) -> float:
            return float(result["finished_at"] - result["started_at"])

        report["peers_ceiling_per_s"] = {"studio": 2000 / span(ceiling), "sink": 2000 / span(sink)}
        report["import_s"] = {
            "studio-engage": import_time("import bot.app.server"),
            "baseline": import_time("import slack_bolt, twilio.rest; twilio.rest.Client"),
        }
        report["bulk_preview"] = bench_json("bulk_preview.py")
        report["consent"] = bench_json(
            "consent_screen.py", "--rows", "10000" if args.quick else "100000"
        )
        # scale (docs/performance.md#scale has the full-size runs: 100,000 rows, 1,000,000
        # records); here smaller, to keep the whole bench near its 20 minutes
        report["bulk_scale"] = bench_json(
            "bulk_scale.py", "--rows", "5000" if args.quick else "20000"
        )
        report["records_year"] = bench_json(
            "records_year.py", "--records", "20000" if args.quick else "200000"
        )
        report["redis_memory"] = bench_json("redis_memory.py")
        report["follow_scale"] = bench_json(
            "follow_scale.py", "--runs", "10000" if args.quick else "50000"
        )
        rows = "200" if args.quick else "1000"
        for key, extra in (("bulk_run", []), ("bulk_two", ["--two"])):
            report[key] = bench_json("bulk_run.py", "--rows", rows, *extra)
        records_rows = "500" if args.quick else "5000"
        for key, extra in (("outcomes_events", []), ("outcomes_polling", ["--polling"])):
            report[key] = bench_json("outcomes_run.py", "--rows", records_rows, *extra)
        scheduled = "1000" if args.quick else "10000"
        report["schedules"] = bench_json("schedules_run.py", "--items", scheduled)
        report["slack_tiers"] = bench_json(
            "slack_tiers_run.py", "--runs", "50" if args.quick else "200"
        )
        saturation = 500 if args.quick else 2000
        report["transports"] = bench_json(
            "transports.py", "--studio", peers, "--total", str(saturation)
        )
        apps = [App("studio-engage", [PY, "-m", "bot"], peers)]
        if not args.no_baseline:
            apps.append(App("baseline", [PY, str(HERE / "baseline_app.py")], peers))
        report["apps"] = {app.name: measure(app, peers, args.quick) for app in apps}
        report["ceiling"] = measure_ceiling(peers, saturation)
        report["shared"] = measure_shared(peers, saturation)
    finally:
        peers_proc.terminate()
        peers_proc.wait(timeout=10)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(report, indent=2))
    print(render(report))
    if not args.quick and not args.no_baseline:
        write_docs(render(report), report)
        print(f"\nwritten to {DOCS.relative_to(HERE.parent)}")


DOCS = HERE.parent / "docs" / "performance.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def commit() -> str:
    """The commit measured (with ``+dirty`` when the work tree differs from it)."""
    git = shutil.which("git") or "git"
    try:
        sha = subprocess.run(
            [git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run([git, "diff", "--quiet", "HEAD", "--", "bot"], check=False)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty.returncode else "")


def write_docs(table: str, report: dict[str, Any]) -> None:
    """Put a full run's table into docs/performance.md, between its markers: the page's
    figures are the bench's own output, never pasted by hand."""
    page = DOCS.read_text()
    head, _, rest = page.partition(START)
    _, _, tail = rest.partition(END)
    body = (
        f"Measured by `bash scripts/bench` on commit `{report['commit']}`,"
        f" {report['date']}, {report['machine']}.\n\n"
        + "\n".join("    " + line if line else "" for line in table.splitlines())
    )
    DOCS.write_text(f"{head}{START}\n{body}\n{END}{tail}")


def render(report: dict[str, Any]) -> str:
    apps = report["apps"]
    ours = apps["studio-engage"]
    base = apps.get("baseline")

    def cell(r: dict[str, Any], latency: float, concurrency: int) -> dict[str, Any]:
        return next(
            c for c in r["grid"] if c["latency_s"] == latency and c["concurrency"] == concurrency
        )

    rows: list[tuple[str, str, str, str, str]] = []

    def row(
        label: str,
        mine: float,
        theirs: float | None,
        unit: str,
        target: str,
        better_low: bool = True,
    ) -> None:
        ratio = ""
        if theirs is not None and mine and theirs == theirs and mine == mine:
            ratio = f"{(theirs / mine if better_low else mine / theirs):.1f}x"
        rows.append(
            (
                label,
                f"{mine:.1f} {unit}",
                f"{theirs:.1f} {unit}" if theirs is not None else "-",
                ratio,
                target,
            )
        )

    for latency in (0.0, 1.0):
        for concurrency in (1, 50, 200):
            c = cell(ours, latency, concurrency)
            b = cell(base, latency, concurrency) if base else None
            target = "≤ 25 ms" if (latency, concurrency) == (1.0, 50) else ""
            row(
                f"ack p50, Studio {latency:.0f} s, {concurrency} concurrent",
                c["ack_p50_ms"],
                (b["ack_p50_ms"] if b else None),
                "ms",
                "",
            )
            row(
                f"ack p99, Studio {latency:.0f} s, {concurrency} concurrent",
                c["ack_p99_ms"],
                (b["ack_p99_ms"] if b else None),
                "ms",
                target,
            )
            row(
                f"ack max, Studio {latency:.0f} s, {concurrency} concurrent",
                c["ack_max_ms"],
                (b["ack_max_ms"] if b else None),
                "ms",
                "",
            )
    c, b = cell(ours, 1.0, 200), cell(base, 1.0, 200) if base else None
    row(
        "200 at once, Studio 1 s: all reported",
        c["all_reported_s"],
        (b["all_reported_s"] if b else None),
        "s",
        "≤ 1.5 s",
    )
    t, bt = ours["throughput"], base["throughput"] if base else None
    row(
        "engagements/s end to end, Studio 0 s",
        t["per_second"],
        (bt["per_second"] if bt else None),
        "/s",
        "≥ 400",
        better_low=False,
    )
    if top := report.get("ceiling"):
        top_rate = top["throughput"]["acks_per_second"]
        row("the stack's ceiling: fixed ack, no work", top_rate, None, "/s", "", better_low=False)
        row(
            "engagements/s as a share of the ceiling",
            100 * t["per_second"] / top_rate,
            None,
            "%",
            "",  # information, no target: see docs/performance.md
            better_low=False,
        )
    for key, label in (("one", "1 process"), ("two", "2 processes")):
        if run := report.get("shared", {}).get(key):
            row(
                f"engagements/s, {label}, one Redis, limits on",
                run["per_second"],
                None,
                "/s",
                "",
                better_low=False,
            )
    if one := report.get("shared", {}).get("one"):
        row(
            "  the same as a share of memory's",
            100 * one["per_second"] / t["per_second"],
            None,
            "%",
            "≥ 80 %",
            better_low=False,
        )
        row(
            "  ack p99 at saturation, as a multiple of memory's",
            one["ack_p99_ms"] / t["ack_p99_ms"],
            None,
            "×",
            "≤ 2 ×",
        )
        if "guardrail_trips_per_start" in one:
            row(
                "  guardrail round trips to Redis per start",
                one["guardrail_trips_per_start"],
                None,
                "",
                "≤ 2",
            )
    shared = list(report.get("shared", {}).values())
    lost = sum(g["sent"] - g["reported"] for g in ours["grid"] + [ours["throughput"]] + shared)
    lost_b = (
        sum(g["sent"] - g["reported"] for g in base["grid"] + [base["throughput"]])
        if base
        else None
    )
    row(
        "lost (sent - reported), all runs",
        float(lost),
        float(lost_b) if lost_b is not None else None,
        "",
        "0",
    )
    row(
        "start-up to first ack",
        ours["startup_s"] * 1000,
        (base["startup_s"] * 1000 if base else None),
        "ms",
        "≤ baseline",
    )
    if top:
        row("start-up to first ack, the ceiling", top["startup_s"] * 1000, None, "ms", "")
    row(
        "import time",
        report["import_s"]["studio-engage"] * 1000,
        report["import_s"]["baseline"] * 1000,
        "ms",
        "",
    )
    row(
        "peak RSS under load",
        ours["peak_rss_mib"],
        (base["peak_rss_mib"] if base else None),
        "MiB",
        "≤ 80 MiB",
    )

    widths = [
        max(len(r[i]) for r in [*rows, ("figure", "studio-engage", "baseline", "ratio", "target")])
        for i in range(5)
    ]
    lines = [f"studio-engage benchmark · {report['machine']} · {report['date']}", ""]
    header = ("figure", "studio-engage", "baseline", "ratio", "target")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    ceiling = report["peers_ceiling_per_s"]
    lines += [
        "",
        f"peers' own ceiling: fake Studio {ceiling['studio']:.0f}/s, response_url sink {ceiling['sink']:.0f}/s (50 concurrent)",
        "ratio: how many times better studio-engage is (baseline ÷ ours for times, ours ÷ baseline for rates)",
    ]
    if transports := report.get("transports"):
        lines += [
            "",
            "the Studio client's transports (bench/transports.py; creates/s, CPU per create):",
        ]
        for name, by_concurrency in transports.items():
            cells = "  ".join(
                f"{c} at once: {r['per_second']:5.0f}/s {r['cpu_ms_per_create']:.2f} ms"
                for c, r in by_concurrency.items()
            )
            lines.append(f"  {name:34}  {cells}")
        lines.append("")
    for key, who in (("bulk_run", "one process"), ("bulk_two", "two processes on one Redis")):
        if run := report.get(key):
            shared = run["with_singles"]
            lines.append(
                f"bulk run, {who}: {run['rows']:,} rows at 20/second started in"
                f" {run['seconds']:.1f} s (target for 1,000: ≤ 53 s), the results file at"
                f" {run['results_s']:.1f} s, {run['responses_429']} answered 429 (target 0),"
                f" at most {run['max_sent_per_second']} arrivals in a second (limit 20);"
                f" then {shared['rows']} rows with {shared['singles']} single commands meanwhile:"
                f" {shared['responses_429']} answered 429, single acks p99"
                f" {run['during_ack_p99_ms']:.1f} ms during it,"
                f" {run['idle_ack_p99_ms']:.1f} ms idle (target ≤ 2× idle)"
            )
    for key in ("outcomes_events", "outcomes_polling"):
        if out := report.get(key):
            after = out["final_results_after_last_end_s"]
            lines.append(
                f"run records, {out['path']}: {out['runs']:,} runs followed to their end:"
                f" {out['studio_reads_per_run']:.2f} Studio reads per run"
                + (" (target ≤ 1.05)" if out["path"] == "event streams" else "")
                + f", at most {out['max_reads_per_second']} reads in a second"
                f" (STUDIO_READ_RATE_LIMIT {out['read_rate_limit']:g}/s),"
                + (f" final results {after:.1f} s after the last end" if after else " no final")
                + (" (target ≤ 10 s)" if out["path"] == "event streams" else "")
                + f", peak RSS {out['peak_rss_mib']:.0f} MiB (target ≤ 120 MiB),"
                f" Redis {out['redis_bytes_per_record']:.0f} B per record (target ≤ 1 KiB)"
            )
    if sched := report.get("schedules"):
        lines.append(
            f"scheduled starts: {sched['items']:,} due within one minute, {sched['bots']} processes"
            f" on one Redis at {sched['rate_per_second']}/second: {sched['creates']:,} creates,"
            f" {sched['distinct_contacts']:,} contacts, {sched['sent_twice']} sent twice"
            f" (target 0); lag above the pace's own wait p50 {sched['lag_above_pace_p50_s']} s,"
            f" p99 {sched['lag_above_pace_p99_s']} s (target ≤ 2 s);"
            f" Redis {sched['redis_bytes_per_schedule']} B per schedule"
        )
    if tiers := report.get("slack_tiers"):
        per_minute = ", ".join(f"{m} {n}" for m, n in tiers["busiest_minute_calls"].items())
        lines.append(
            f"Slack's tiers: {tiers['runs']} runs followed at once in one channel, ending within"
            f" a minute: busiest minute {per_minute}; 429s {tiers['answers_429'] or 'none'}"
            f" (after the first per method: {tiers['answers_429_after_the_first'] or 'none'},"
            f" target none); {tiers['cards_by_response_url']} cards were the command's reply"
            f" ({tiers['response_url_uses_refused']} response_url uses refused, target 0);"
            f" every card showed its end after"
            f" {tiers['seconds_until_every_card_shows_its_end']} s (target ≤ 90 s)"
        )
    if scale := report.get("bulk_scale"):
        lines.append(
            f"bulk scale: {scale['rows']:,} CSV rows: preview {scale['preview_s']} s, run"
            f" {scale['run_s']} s at {scale['pace_per_s']}/s lifted, bot peak RSS"
            f" {scale['peak_rss_mib']} MiB (target ≤ 200 MiB), {scale['cpu_ms_per_row']} ms"
            f" CPU per row, Redis {scale['redis_bytes_per_row_after']} B per row with its"
            " record"
        )
    if year := report.get("records_year"):
        lines.append(
            f"records: {year['records']:,} over a year: report 7 d"
            f" {year['report_7d']['seconds']} s, 90 d {year['report_90d']['seconds']} s"
            f" (target ≤ 1 s), Home {year['home']['seconds']} s (target ≤ 0.3 s), 90 days'"
            f" CSV {year['csv_90d']['runs']:,} rows in {year['csv_90d']['seconds']} s at"
            f" peak RSS {year['csv_90d']['peak_rss_mib']} MiB"
        )
    if follow := report.get("follow_scale"):
        lines.append(
            f"followed at once: {follow['runs']:,} runs waiting up to"
            f" {follow['longest_wait_min']:g} min with Event Streams"
            f" ({follow['ends_lost']:,} ends never delivered):"
            f" {follow['studio_reads_per_run']} Studio reads per run (target ≤ 1.05),"
            f" {follow['left_unrecorded']} left unrecorded; a sweep tick with nothing due"
            f" {follow['sweep_tick_ms_nothing_due']} ms; RSS each hour"
            f" {min(follow['rss_mib_each_hour'])}-{max(follow['rss_mib_each_hour'])} MiB;"
            f" {follow['cpu_ms_per_run_followed']} ms CPU per run followed"
        )
    if memory := report.get("redis_memory"):
        each = ", ".join(f"{name} {n} B" for name, n in memory.items())
        lines.append(f"Redis per thing: {each}")
    if consent := report.get("consent"):
        lines.append(
            f"consent: {consent['rows']:,} preview rows screened against"
            f" {consent['optouts']:,} opt-outs and a cap in {consent['screen_seconds']:.2f} s"
            f" (target ≤ 1 s), {consent['script_calls']} script calls;"
            f" {consent['list_bytes_per_optout']} B of Redis per opted-out contact"
        )
    if bulk := report.get("bulk_preview"):
        lines.append(
            f"bulk preview: {bulk['rows']:,} CSV rows read and previewed in {bulk['seconds']:.2f} s"
            f" (target ≤ 2 s), peak RSS {bulk['peak_rss_mib']:.0f} MiB (target ≤ 150 MiB)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
