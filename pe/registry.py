"""The PE registry: each processing element declares itself here once.

A PE's declaration (:class:`PeSpec`) names it, lists the channels it reads and
writes, gives its parameter model, the function that creates its Faust agents, and
says whether a deployment may run more than one process of it. Everything that
needs to know the PEs reads them from here: topology validation and its parameter
schema, the worker's wiring (which also refuses a PE reading a channel it did not
declare), the PE named on log records, ``crowdstream topology`` and the checks of
the compose file.

The built-in PEs register when :func:`pe_specs` first runs; a topology names more
modules to import (``modules:``), whose PEs register the same way (see
docs/extending.md).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, create_model

from channels.shedding import SheddingPolicy
from channels.topics import CHANNELS, Channel

if TYPE_CHECKING:
    from runtime.context import PipelineContext

__all__ = [
    "BUILTIN_MODULES",
    "PeSpec",
    "import_pe_modules",
    "params_model",
    "params_of",
    "pe_of_logger",
    "pe_spec",
    "pe_specs",
    "register_pe",
    "unregister_pe",
]

P = TypeVar("P", bound=BaseModel)

#: The built-in PEs, in the order of the data flow (the default topology's order).
BUILTIN_MODULES = (
    "pe.collector",
    "pe.features",
    "pe.classifier",
    "pe.taskgen",
    "pe.jobs",
    "pe.annotator",
    "pe.learner",
    "pe.notifier",
)


@dataclass(frozen=True)
class PeSpec:
    """One processing element.

    ``inputs`` and ``outputs`` are channel keys (``items.raw``) or outside endpoints
    (``http:/items``, ``kafka:<source_topic>``). ``params`` is the model of the PE's
    section of a topology's ``params`` (named after the PE). A ``singleton`` keeps
    state that is not split by partition: one process of it per pipeline.
    """

    name: str
    #: The package or module of the PE: records of loggers under it name the PE.
    package: str
    summary: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    #: ``module:function`` of the function that creates the PE's agents, timers and
    #: routes in a worker; imported only by a worker that runs the PE.
    agents: str
    params: type[BaseModel] | None = None
    singleton: bool = False
    #: Channels the PE adds to the pipeline's (channels.topics.CHANNELS), by key.
    channels: Mapping[str, Channel] = field(default_factory=dict)
    #: Whether the same input gives the same output (pipelines.contract checks it).
    #: Not for a PE whose output is people's answers as and when they give them.
    replayable: bool = True

    def reads(self, channel: str) -> bool:
        return channel in self.inputs

    def start(self, ctx: PipelineContext) -> None:
        """Create the PE's agents, timers and routes in the worker of ``ctx``."""
        module, _, function = self.agents.partition(":")
        register: Callable[[PipelineContext], None] = getattr(
            importlib.import_module(module), function
        )
        register(ctx)


_SPECS: dict[str, PeSpec] = {}


def register_pe(spec: PeSpec) -> PeSpec:
    """Add a PE to the registry; a second PE of the same name is refused."""
    for key in spec.channels:
        if key in CHANNELS:
            raise ValueError(f"PE {spec.name!r} declares channel {key!r}, a built-in one")
    known = _SPECS.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"a PE named {spec.name!r} is already registered (from {known.package})")
    if spec.params is not None:
        for other in _SPECS.values():
            if other.name != spec.name and other.params is spec.params:
                msg = f"PEs {other.name!r} and {spec.name!r} share the parameter model"
                raise ValueError(f"{msg} {spec.params.__name__}: give each its own")
    _SPECS[spec.name] = spec
    params_model.cache_clear()
    return spec


def unregister_pe(name: str) -> None:
    """Remove a PE from the registry (tests that register one of their own)."""
    _SPECS.pop(name, None)
    params_model.cache_clear()


def import_pe_modules(modules: Iterable[str]) -> None:
    """Import modules that register PEs; a module that is missing is a clear error."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"PE module {name!r} cannot be imported: {exc}") from None


def pe_specs() -> tuple[PeSpec, ...]:
    """Every registered PE, built-in ones first in data-flow order."""
    import_pe_modules(BUILTIN_MODULES)
    order = {module: i for i, module in enumerate(BUILTIN_MODULES)}
    return tuple(sorted(_SPECS.values(), key=lambda spec: order.get(spec.package, len(order))))


def pe_spec(name: str) -> PeSpec:
    """The PE named ``name``; unknown names are a ValueError listing the known ones."""
    for spec in pe_specs():
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in pe_specs())
    raise ValueError(f"unknown PE {name!r}; known: {known}")


@functools.cache
def params_model() -> type[BaseModel]:
    """The model of a topology's ``params``: one section per registered PE that has
    parameters, and ``shedding``. Built again when a PE registers."""
    fields: dict[str, Any] = {
        spec.name: (spec.params, spec.params()) for spec in pe_specs() if spec.params is not None
    }
    # Load shedding is the pipeline's policy for every data-flow stage, not one PE's.
    fields["shedding"] = (SheddingPolicy, SheddingPolicy())
    return create_model("PeParams", __config__=ConfigDict(extra="forbid", frozen=True), **fields)


def params_of(params: BaseModel, kind: type[P]) -> P:
    """The section of ``params`` (an instance of :func:`params_model`) of type ``kind``."""
    for value in params.__dict__.values():
        if type(value) is kind:
            return value
    raise KeyError(f"no parameters of type {kind.__name__}: is its PE registered?")


def pe_of_logger(logger: str) -> str | None:
    """The PE a logger belongs to (by the module it is named after), if any.

    Only PEs already registered count: a log record must never import the PEs' modules
    (a command that logs without loading a topology would import them all, inside
    a logging call, from whatever thread logs).
    """
    for spec in tuple(_SPECS.values()):
        if logger == spec.package or logger.startswith(spec.package + "."):
            return spec.name
    return None
