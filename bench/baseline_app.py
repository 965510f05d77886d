"""The baseline, built the way tutorials build it: a synchronous Bolt app whose
listener calls Twilio's helper library, served by Bolt's own ``app.start()``.

Not part of the bot; the benchmark runs it side by side with the same load.
"""

from __future__ import annotations

import json
import os

from slack_bolt import App
from slack_sdk import WebClient
from twilio.rest import Client

app = App(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    client=WebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"]),
)
twilio = Client(os.environ["TWILIO_ACCOUNT_SID"], os.environ["TWILIO_AUTH_TOKEN"])
twilio.studio.base_url = os.environ["STUDIO_BASE_URL"]
FLOW = os.environ["STUDIO_FLOW_SID"]
SENDER = os.environ["STUDIO_FROM"]


@app.command("/engage")
def engage(ack, command, respond):  # type: ignore[no-untyped-def]
    ack("Starting…")
    to, *items = command["text"].split()
    params = dict(item.split("=", 1) for item in items if "=" in item)
    execution = twilio.studio.v1.flows(FLOW).engagements.create(
        to=to, from_=SENDER, parameters=json.dumps(params)
    )
    respond(f"Started {execution.sid} ({execution.status})", response_type="in_channel")


if __name__ == "__main__":
    app.start(port=int(os.environ["PORT"]))
