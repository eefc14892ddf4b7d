"""wspool.Pool(deliver="dispatcher"): the opt-in inline delivery, where callbacks run
on the dispatcher thread itself (no hand-off to a worker; a slow callback stalls every
socket).  Its own row in the tables; not the reference and not judged by the targets,
which are for the default worker-pool delivery.

Every scenario is :mod:`bench.drivers.wspool_pool`'s with ``deliver="dispatcher"`` added
to the Pool's options; measuring an older wspool whose Pool has no ``deliver`` argument
makes each scenario unsupported (its ``TypeError`` is named in the reason).
"""

from __future__ import annotations

from collections.abc import Callable

from bench.drivers import wspool_pool
from bench.drivers._common import Params, Result

#: The Pool option this variant adds.
DELIVER = "dispatcher"


def _inline(scenario: Callable[[Params], Result]) -> Callable[[Params], Result]:
    """``scenario`` run with the inline delivery."""

    def run(params: Params) -> Result:
        return scenario({**params, "deliver": DELIVER})

    run.__doc__ = scenario.__doc__
    return run


fanin = _inline(wspool_pool.fanin)
latency = _inline(wspool_pool.latency)
idle = _inline(wspool_pool.idle)
recv_large = _inline(wspool_pool.recv_large)
fragments = _inline(wspool_pool.fragments)
send_large = _inline(wspool_pool.send_large)
sending = _inline(wspool_pool.sending)
