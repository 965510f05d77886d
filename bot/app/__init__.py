"""The process: settings, wiring (services), the HTTP server and the CLI. Imports everything."""
