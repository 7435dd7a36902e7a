"""Log output: plain text for people, or one JSON object per line for log pipelines.

With ``log_format: json`` every record is an object with ``ts`` (epoch seconds),
``time`` (ISO 8601, UTC), ``level``, ``logger``, ``msg``, and where known
``pipeline``, ``pe`` (from the logging module, or given by the caller), and the ids a
record is about (``item_id``, ``task_id``, ``job_id``, ``worker_id``,
``classifier``, ``topic``), passed as ``extra={...}``; ``exc`` holds a traceback.
"""

from __future__ import annotations

import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from pe.registry import pe_of_logger

__all__ = ["CONTEXT_FIELDS", "ContextFilter", "JsonFormatter", "configure", "logging_config"]

LogFormat = Literal["text", "json"]
#: Fields a log call may pass in ``extra`` that JSON output keeps.
CONTEXT_FIELDS = (
    "pipeline",
    "pe",
    "item_id",
    "task_id",
    "job_id",
    "worker_id",
    "classifier",
    "topic",
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"}


class ContextFilter(logging.Filter):
    """Adds the pipeline and the PE (from the logger's module) to every record."""

    def __init__(self, pipeline: str | None = None) -> None:
        super().__init__()
        self.pipeline = pipeline

    def filter(self, record: logging.LogRecord) -> bool:
        if self.pipeline and getattr(record, "pipeline", None) is None:
            record.pipeline = self.pipeline
        if getattr(record, "pe", None) is None:
            record.pe = pe_of_logger(record.name)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a record (kept rather than python-json-logger: a dozen lines
    with orjson give exactly the fields above, where the library adds every extra
    attribute a third-party logger sets)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def logging_config(fmt: LogFormat, level: str, pipeline: str | None = None) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document for ``fmt`` at ``level``."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"} if fmt == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}.ContextFilter", "pipeline": pipeline}},
        "formatters": {"main": formatter},
        "handlers": {
            "main": {
                "class": "logging.StreamHandler",
                "stream": sys.stderr,
                "formatter": "main",
                "filters": ["context"],
            }
        },
        "root": {"level": LEVELS.get(level, level.upper()), "handlers": ["main"]},
    }


def configure(fmt: LogFormat, level: str, pipeline: str | None = None) -> None:
    logging.config.dictConfig(logging_config(fmt, level, pipeline))
