"""What counting costs the ack path: the same load against the bot with
``METRICS_ENABLED=true`` and ``false``, in alternating rounds (the machine's own drift
falls on both). Prints one JSON object: each round's ack p50/p99, their medians, and
p99 on as a share of off (issue 36's budget: within 5 %). Figures, never asserted.

    .venv/bin/python bench/metrics_cost.py [--rounds 3] [--commands 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from typing import Any

from run import HERE, PY, App, free_port, http, scenario, wait_port


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    peers = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([PY, str(HERE / "peers.py"), "--port", str(port)])
    rounds: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    offset = 0
    try:
        wait_port(port, proc)
        http("POST", f"{peers}/reset?latency=0")
        for _ in range(args.rounds):
            for name, flag in (("on", "true"), ("off", "false")):
                app = App(f"metrics {name}", [PY, "-m", "bot"], peers, METRICS_ENABLED=flag)
                app.start(peers)
                try:  # a closed loop: each client sends its next command once acked
                    result = scenario(app, peers, 0.0, args.concurrency, args.commands, offset)
                finally:
                    app.stop()
                offset += args.commands
                rounds[name].append(
                    {"ack_p50_ms": result["ack_p50_ms"], "ack_p99_ms": result["ack_p99_ms"]}
                )
    finally:
        proc.terminate()
    report: dict[str, Any] = {"rounds": rounds, "commands": args.commands}
    for name in ("on", "off"):
        for key in ("ack_p50_ms", "ack_p99_ms"):
            report[f"{key}_{name}"] = statistics.median(r[key] for r in rounds[name])
    report["p99_on_over_off"] = report["ack_p99_ms_on"] / report["ack_p99_ms_off"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
