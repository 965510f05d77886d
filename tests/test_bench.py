"""The benchmark's own arithmetic and report (the benchmark itself runs with scripts/bench)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import run as bench


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 50) == 51.0
    assert bench.percentile(values, 99) == 99.0
    assert bench.percentile([3.0], 99) == 3.0


def cell(latency: float, concurrency: int, ack: float) -> dict[str, Any]:
    return {
        "latency_s": latency,
        "concurrency": concurrency,
        "sent": 10,
        "reported": 10,
        "ack_p50_ms": ack,
        "ack_p99_ms": ack * 2,
        "ack_max_ms": ack * 3,
        "all_reported_s": 1.2,
        "per_second": 500.0,
    }


def result(ack: float, rss: float) -> dict[str, Any]:
    grid = [cell(lat, c, ack) for lat in (0.0, 1.0) for c in (1, 50, 200)]
    return {"grid": grid, "throughput": cell(0.0, 50, ack), "startup_s": 0.5, "peak_rss_mib": rss}


def test_report_puts_each_figure_beside_the_baseline_and_its_target() -> None:
    report = {
        "machine": "x86_64 2 cores",
        "date": "today",
        "peers_ceiling_per_s": {"studio": 5000.0, "sink": 6000.0},
        "import_s": {"studio-engage": 0.5, "baseline": 0.2},
        "apps": {"studio-engage": result(2.0, 70.0), "baseline": result(20.0, 40.0)},
    }
    text = bench.render(report)
    assert "ack p99, Studio 1 s, 50 concurrent" in text
    line = next(
        row for row in text.splitlines() if row.startswith("ack p50, Studio 0 s, 1 concurrent")
    )
    assert "2.0 ms" in line
    assert "20.0 ms" in line
    assert "10.0x" in line
    assert "≤ 25 ms" in text
    assert "fake Studio 5000/s" in text


def test_the_bulk_preview_figure_is_measured_and_printed() -> None:
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, str(Path(bench.HERE) / "bulk_preview.py"), "--rows", "200"],
        capture_output=True,
        text=True,
        check=True,
    )
    figure = json.loads(out.stdout)
    assert figure["rows"] == 200
    assert figure["valid"] == 200
    assert figure["seconds"] > 0


def test_the_ceiling_the_shared_state_and_the_transports_are_reported() -> None:
    ceiling = {"startup_s": 0.2, "throughput": {"acks_per_second": 2000.0}}
    transports = {"ours": {"1": {"per_second": 2500.0, "cpu_ms_per_create": 0.31}}}
    report = {
        "machine": "x86_64 2 cores",
        "date": "today",
        "peers_ceiling_per_s": {"studio": 5000.0, "sink": 6000.0},
        "import_s": {"studio-engage": 0.5, "baseline": 0.2},
        "apps": {"studio-engage": result(2.0, 70.0)},  # 500/s, see cell()
        "ceiling": ceiling,
        "shared": {"one": cell(0.0, 50, 3.0), "two": {**cell(0.0, 50, 3.0), "per_second": 700.0}},
        "transports": transports,
    }
    lines = bench.render(report).splitlines()

    def line(start: str) -> str:
        return next(row for row in lines if row.startswith(start))

    assert "2000.0 /s" in line("the stack's ceiling")
    share = line("engagements/s as a share of the ceiling")
    assert "25.0 %" in share
    assert "≥" not in share  # information, no target any more (docs/performance.md)
    assert "500.0 /s" in line("engagements/s, 1 process, one Redis")
    assert "700.0 /s" in line("engagements/s, 2 processes, one Redis")
    assert "200.0 ms" in line("start-up to first ack, the ceiling")
    assert "2500/s 0.31 ms" in line("  ours")


def test_the_ceiling_app_acks_what_slack_signed_and_refuses_the_rest() -> None:
    import subprocess

    import httpx

    port = bench.free_port()
    env = bench.bot_env(port, "http://127.0.0.1:9")
    proc = subprocess.Popen(
        [sys.executable, str(Path(bench.HERE) / "ceiling_app.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        bench.wait_port(port, proc)
        url = f"http://127.0.0.1:{port}/slack/events"
        assert bench.signed_command(url, "http://127.0.0.1:9/respond") == 200
        assert httpx.post(url, content=b"command=%2Fengage").status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_dashboard_pictures_quantile_and_rate_are_promqls() -> None:
    """bench/dashboard_picture.py computes the panels as PromQL would: a rate from
    counter deltas, a quantile from histogram buckets (linear within the bucket)."""
    import dashboard_picture as picture

    def histogram(counts: dict[str, float]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {("h_bucket", (("le", le),)): v for le, v in counts.items()}

    before = histogram({"0.1": 0, "0.5": 0, "1.0": 0, "+Inf": 0})
    after = histogram({"0.1": 50, "0.5": 90, "1.0": 100, "+Inf": 100})  # cumulative
    scrapes = [(0.0, before), (1.0, after)]
    assert picture.quantile(scrapes, "h", 0.5)[1] == 0.1  # the 50th of 100 is the 0.1 bucket's top
    assert abs(picture.quantile(scrapes, "h", 0.99)[1] - 0.95) < 1e-9  # 9 of 10 into (0.5, 1]
    none: tuple[tuple[str, str], ...] = ()
    counter = [(0.0, {("c_total", none): 10.0}), (2.0, {("c_total", none): 30.0})]
    assert picture.per_minute(counter, "c_total") == [0.0, 600.0]  # 20 in 2 s: 600 a minute
