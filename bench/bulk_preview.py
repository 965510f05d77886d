"""One bulk figure (issue 12): a 10,000-row CSV read and previewed, its time and the peak
RSS of the process that did it. Prints one JSON line; bench/run.py puts it in the table.

    .venv/bin/python bench/bulk_preview.py [--rows 10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.domain.bulk_input import read_csv
from bot.domain.bulk_plan import plan
from bot.domain.flows import FlowInfo, analyse
from bot.domain.policy import Policy

DEFINITION = {
    "states": [
        {
            "name": "Trigger",
            "type": "trigger",
            "transitions": [{"event": "incomingRequest", "next": "a"}],
        },
        {
            "name": "a",
            "type": "send-message",
            "properties": {"body": "Hi {{flow.data.first_name}} {{flow.data.plan}}"},
        },
    ]
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    rows = parser.parse_args().rows
    lines = ["phone,first_name,plan"] + [
        f"+1617555{i % 10000:04d},Name{i},{'gold' if i % 2 else 'silver'}" for i in range(rows)
    ]
    data = "\n".join(lines).encode()  # as the file arrives: bytes, decoded by read_csv
    started = time.perf_counter()
    read = read_csv(data, region="US", max_rows=rows).rows
    info = FlowInfo("FW" + "b" * 32, "Survey", "published", 1, analyse(DEFINITION))
    made = plan(
        read,
        flow_sid=info.sid,
        flow_alias="survey",
        sender="+16175550100",
        shared={},
        policy=Policy(countries=frozenset({"US"})),
        info=info,
        per_second=20.0,
    )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    print(
        json.dumps(
            {"rows": rows, "seconds": seconds, "peak_rss_mib": peak, "valid": len(made.valid)}
        )
    )


if __name__ == "__main__":
    main()
