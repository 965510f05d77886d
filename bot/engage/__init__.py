"""The use-cases: the one way to start a flow (start), its guardrails (throttle), confirmations, schedules, bulk runs. Render nothing; import runs and below."""
