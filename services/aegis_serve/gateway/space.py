"""The gateway's space state: do the pools' replicas write into one vector space?

Every encoder declares the space it writes into (`space_id`, dims) and its role. After each
probe of the pools, `SpaceState.check` takes replicas that declare the wrong role out of
rotation and compares what the healthy ones declare: one space → serving; two → not
serving (FAILED_PRECONDITION on every Embed), with a message naming who declared what. The
document pool defines the space: its Matryoshka dims, layer options and int8 calibration
ranges are what the gateway offers and applies.
"""

from __future__ import annotations

import numpy as np

from aegis.encoder.v1 import encoder_pb2
from aegis_serve.gateway.pools import Pool


class SpaceState:
    """What the two pools declare, and why the gateway does not serve (if it does not)."""

    def __init__(self, query: Pool, document: Pool) -> None:
        self.query = query
        self.document = document
        self.problem = "pools not probed yet"
        self.mismatch = False

    @property
    def pools(self) -> tuple[Pool, Pool]:
        return self.query, self.document

    @property
    def serving(self) -> bool:
        return not self.problem

    @property
    def reference(self) -> encoder_pb2.GetInfoResponse | None:
        """The info that defines the space: the document pool's, else the query pool's."""
        return self.document.info or self.query.info

    def check(self) -> None:
        """After a probe: refuse replicas in the wrong pool, then compare declared spaces."""
        for pool in self.pools:
            for r in pool.healthy:
                if r.info is not None and r.info.role != pool.role:
                    r.healthy = False
                    r.problem = f"declares role {r.info.role!r}, configured in the {pool.role} pool"
        self.mismatch, self.problem = self._problem()

    def _problem(self) -> tuple[bool, str]:
        """(spaces differ, why not serving); (False, '') when one space is reachable."""
        declared: dict[tuple[str, int], list[str]] = {}
        for pool in self.pools:
            for r in pool.healthy:
                assert r.info is not None
                key = (r.info.space_id, r.info.dimensions)
                declared.setdefault(key, []).append(f"{pool.role}@{r.target}")
        if len(declared) <= 1:
            if not self.document.healthy and not self.query.healthy:
                return False, "no encoder replica is reachable"
            return False, ""
        parts = "; ".join(
            f"{space!r} ({dims} dims) declared by {', '.join(who)}"
            for (space, dims), who in sorted(declared.items())
        )
        return True, (
            f"encoder pools declare different vector spaces: {parts}. Refusing to serve: "
            "query and document vectors would not be comparable"
        )

    def options(self, pool: Pool) -> tuple[list[int], list[int]] | None:
        """(Matryoshka dims, layer options) a request routed to `pool` may ask for; None
        while no replica has answered."""
        info = self.document.info or pool.info
        if info is None:
            return None
        layers = list(info.layer_options) if pool.role == "document" else []
        return list(info.matryoshka_dimensions), layers

    def calibration(self, dims: int) -> np.ndarray | None:
        """Int8 calibration ranges for `dims` (document pool first: it defines the space)."""
        for pool in (self.document, self.query):
            info = pool.info
            if info is None:
                continue
            for cal in info.calibration:
                if cal.dimensions == dims:
                    return np.asarray([cal.minimum, cal.maximum], dtype=np.float32)
        return None
