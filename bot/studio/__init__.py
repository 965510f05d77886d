"""Twilio Studio's REST API: the client (one connection pool, never a start twice), its transport, the flow catalog. Knows nothing of Slack; imports state, infra and the domain."""
