"""Crowd adapters from outside crowdstream: the ``crowd`` setting's ``module:factory``.

``crowd: package.module:factory`` (``crowdstream up --crowd package.module:factory``)
names a callable the annotator calls once, when its pool starts, with a
:class:`CrowdSetup`; it returns the :class:`~pe.annotator.crowd.CrowdAdapter` the pool
service drives. The settings import the module and check the callable when they are
read, and the annotator checks what the factory returns, so a bad spec stops the
worker at start with a sentence that names it (docs/crowd.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from pe.annotator.clock import Clock
from pe.annotator.crowd import CrowdAdapter
from pe.params import AnnotatorParams

__all__ = ["CrowdFactory", "CrowdSetup", "crowd_factory", "make_crowd"]


@dataclass(frozen=True)
class CrowdSetup:
    """What a crowd factory gets."""

    #: The pool's clock: read time and schedule every callback through it (the event
    #: loop's clock at ``params.speed`` in a worker, a virtual clock in simulations).
    clock: Clock
    #: The annotator's parameters (``params.annotator`` of the topology).
    params: AnnotatorParams

    @property
    def options(self) -> Mapping[str, str]:
        """The adapter's own options: ``params.crowd_options``."""
        return self.params.crowd_options


CrowdFactory = Callable[[CrowdSetup], CrowdAdapter]


def crowd_factory(spec: str) -> CrowdFactory:
    """The callable ``spec`` (``package.module:name``) names; a ValueError that says
    what is wrong with it otherwise."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        msg = f"crowd {spec!r}: expected simulated, web, none or package.module:factory"
        raise ValueError(msg)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        msg = f"crowd {spec!r}: module {module_name!r} cannot be imported ({exc})"
        raise ValueError(msg) from None
    factory = getattr(module, name, None)
    if factory is None:
        raise ValueError(f"crowd {spec!r}: module {module_name!r} has no {name!r}")
    if not callable(factory):
        kind = type(factory).__name__
        raise ValueError(f"crowd {spec!r}: {name!r} is a {kind}, not a callable")
    return cast(CrowdFactory, factory)


def make_crowd(spec: str, setup: CrowdSetup) -> CrowdAdapter:
    """The adapter ``spec``'s factory makes for ``setup``; a TypeError if it makes
    something else."""
    crowd = crowd_factory(spec)(setup)
    if not isinstance(crowd, CrowdAdapter):
        kind = type(crowd).__name__
        msg = f"crowd {spec!r} returned a {kind}, not a CrowdAdapter (pe.annotator.crowd)"
        raise TypeError(msg)
    return crowd
