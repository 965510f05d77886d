"""The process: settings, factories and wiring (services), Bolt and its listeners, the HTTP server, the CLI. Imports everything."""
