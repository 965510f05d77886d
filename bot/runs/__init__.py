"""Runs once started: who started each, their records, following them to their end (the sweep, Event Streams). Imports studio, state, infra and the domain."""
