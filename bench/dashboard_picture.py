"""A picture of docs/grafana-dashboard.json's panels, drawn from a real bot's /metrics
while a load runs: Grafana does not run in this workplace, so the panels' queries are
computed here from scrapes (rates from counter deltas, p99 from histogram buckets, as
PromQL's ``rate`` and ``histogram_quantile`` do) and drawn with matplotlib.

    .venv/bin/python -m pip install matplotlib    # only for this picture
    .venv/bin/python bench/dashboard_picture.py [--out docs/dashboard.png]

The load: a quiet start, a steady stream of slash commands, then bursts, against
bench/peers.py's fake Studio (50 ms a create) under STUDIO_RATE_LIMIT=40/second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from run import HERE, PY, REPO, App, free_port, http, load, wait_port

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
WINDOW = 5  # scrapes (seconds) a rate or a quantile is computed over


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, found), v in samples.items()
        if n == name and all((k, w) in found for k, w in labels.items())
    )


def per_minute(scrapes: list[tuple[float, Samples]], name: str, **labels: str) -> list[float]:
    out = []
    for i, (t, now) in enumerate(scrapes):
        j = max(0, i - WINDOW)
        t0, then = scrapes[j]
        span = t - t0
        out.append(
            (total(now, name, **labels) - total(then, name, **labels)) / span * 60 if span else 0.0
        )
    return out


def quantile(
    scrapes: list[tuple[float, Samples]], name: str, q: float, **labels: str
) -> list[float]:
    """``histogram_quantile`` over the last WINDOW scrapes (linear within a bucket)."""
    out = []
    for i, (_, now) in enumerate(scrapes):
        _, then = scrapes[max(0, i - WINDOW)]
        buckets: dict[float, float] = {}
        for (n, found), v in now.items():
            label = dict(found)
            if n != f"{name}_bucket" or any(label.get(k) != w for k, w in labels.items()):
                continue
            le = float(label["le"])
            buckets[le] = buckets.get(le, 0.0) + v - then.get((n, found), 0.0)
        edges = sorted(buckets)
        count = buckets[edges[-1]] if edges else 0.0
        if not count:
            out.append(float("nan"))
            continue
        rank, low, below = q * count, 0.0, 0.0
        value = float("nan")
        for le in edges:
            if buckets[le] >= rank:
                inside = buckets[le] - below
                high = le if le != float("inf") else low
                value = low + (high - low) * ((rank - below) / inside if inside else 1)
                break
            low, below = le, buckets[le]
        out.append(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(REPO / "docs" / "dashboard.png"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    port = free_port()
    peers = f"http://127.0.0.1:{port}"
    peers_proc = subprocess.Popen([PY, str(HERE / "peers.py"), "--port", str(port)])
    try:
        scrapes = measure(peers, port, peers_proc)
    finally:
        peers_proc.terminate()
    draw(scrapes, args.out, plt)


def measure(
    peers: str, port: int, peers_proc: subprocess.Popen[bytes]
) -> list[tuple[float, Samples]]:
    """Scrape /metrics every second while the load runs."""
    wait_port(port, peers_proc)
    http("POST", f"{peers}/reset?latency=0.05")
    app = App("dashboard", [PY, "-m", "bot"], peers)
    app.env["STUDIO_RATE_LIMIT"] = "40/second"  # turns to wait for, on the pace panel
    app.start(peers)
    metrics_url = app.url.replace("/slack/events", "/metrics")
    scrapes: list[tuple[float, Samples]] = []
    done = threading.Event()

    def traffic() -> None:
        respond = f"{peers}/respond"
        time.sleep(8)  # quiet
        load([app.url], 4, 400, 10_000, respond)  # a steady stream
        time.sleep(4)
        load([app.url], 50, 1200, 20_000, respond, waves=4, gap=3.0)  # bursts
        time.sleep(8)
        done.set()

    worker = threading.Thread(target=traffic)
    started = time.time()
    worker.start()
    try:
        while not done.is_set():
            scrapes.append((time.time() - started, scrape(metrics_url)))
            time.sleep(1.0)
    finally:
        worker.join()
        app.stop()
    return scrapes


def draw(scrapes: list[tuple[float, Samples]], out: str, plt: Any) -> None:
    """The dashboard's panels, as docs/grafana-dashboard.json lays them out."""
    xs = [t for t, _ in scrapes]
    panels: list[tuple[str, list[tuple[str, list[float]]], str]] = [
        (
            "Starts and refusals per minute",
            [
                (o, per_minute(scrapes, "engage_outcomes_total", outcome=o))
                for o in ("started", "refused", "failed", "unknown")
            ],
            "",
        ),
        (
            "Studio answers 429 and retries per minute",
            [
                ("429s", per_minute(scrapes, "engage_studio_answers_total", status="429")),
                ("retries", per_minute(scrapes, "engage_studio_retries_total")),
            ],
            "",
        ),
        (
            "Slack Web API: rate limited and errors per minute",
            [
                ("429", per_minute(scrapes, "engage_slack_calls_total", result="ratelimited")),
                ("error", per_minute(scrapes, "engage_slack_calls_total", result="error")),
            ],
            "",
        ),
        (
            "Ack latency p99 (Slack's 3 s limit)",
            [
                ("p99", quantile(scrapes, "engage_ack_seconds", 0.99)),
                ("p50", quantile(scrapes, "engage_ack_seconds", 0.5)),
            ],
            "s",
        ),
        (
            "Studio request latency p99",
            [("create", quantile(scrapes, "engage_studio_request_seconds", 0.99, method="create"))],
            "s",
        ),
        (
            "Queues",
            [
                (q, [total(s, "engage_queue_depth", queue=q) for _, s in scrapes])
                for q in (
                    "schedules_waiting",
                    "bulk_rows_waiting",
                    "runs_followed_for_records",
                    "runs_overdue",
                    "cards_followed",
                )
            ],
            "",
        ),
        (
            "Store outages and fallbacks per minute",
            [
                ("outages", per_minute(scrapes, "engage_store_outages_total")),
                ("answered from memory", per_minute(scrapes, "engage_store_fallbacks_total")),
            ],
            "",
        ),
        (
            "Event Streams deliveries per minute",
            [
                (
                    "accepted",
                    per_minute(scrapes, "engage_event_deliveries_total", result="accepted"),
                ),
                ("refused", per_minute(scrapes, "engage_event_deliveries_total", result="refused")),
            ],
            "",
        ),
        (
            "Wait for a Studio turn p99",
            [("studio", quantile(scrapes, "engage_pace_wait_seconds", 0.99, pace="studio"))],
            "s",
        ),
    ]
    plt.style.use("dark_background")
    figure = plt.figure(figsize=(14, 16), dpi=80)
    figure.suptitle(
        "studio-engage (docs/grafana-dashboard.json's panels, from a load on this machine)",
        fontsize=13,
    )
    for i, (title, series, unit) in enumerate(panels):
        axes = figure.add_subplot(5, 2, i + 1) if i < 8 else figure.add_subplot(5, 1, 5)
        for label, ys in series:
            axes.plot(xs, ys, label=label, linewidth=1.6)
        axes.set_title(title, fontsize=11, loc="left")
        axes.set_xlabel("seconds", fontsize=8)
        if unit:
            axes.set_ylabel(unit, fontsize=8)
        axes.grid(alpha=0.2)
        axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout(rect=(0, 0, 1, 0.98))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    last = scrapes[-1][1]
    print(
        json.dumps(
            {
                "out": out,
                "scrapes": len(scrapes),
                "started": total(last, "engage_outcomes_total", outcome="started"),
            }
        )
    )


if __name__ == "__main__":
    main()
