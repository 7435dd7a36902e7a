"""Pipelines: topology definitions, the app factory, the embedded broker and the CLI."""
