"""studio-engage: start Twilio Studio flows from a Slack slash command."""

__version__ = "0.1.0"
