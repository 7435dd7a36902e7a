"""The built-in web crowd: a worker page and a worker/operator HTTP API (``/api/v1``).

People join the retainer pool in a browser; the same pool service the simulator
drives (:class:`~pe.annotator.lifeguard.LifeGuard`) assigns their tasks.
"""
