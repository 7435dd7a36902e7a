"""Settings for crowdstream: one frozen pydantic-settings model fed by YAML and the environment."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
