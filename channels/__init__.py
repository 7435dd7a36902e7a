"""Channels: topic declarations, record schemas and codecs. Declarations only; no PE logic."""
