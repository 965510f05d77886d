"""What every layer above the domain uses: logs, metrics, the audit log, background tasks, outbound HTTP settings. Imports only the domain."""
