"""Verified space identity: a replica joins the rotation only if its vectors say it should.

Declared names (`space_id`, dims) are compared in gateway/space.py; this module compares
vectors. Each replica's GetInfo carries its model directory's canaries (texts + the reference
vectors recorded when the model was built, models/canaries.py). When a replica joins (first
probe, a restart, a changed identity) it is held out of rotation until the gateway has
embedded canary texts through it, over the same Encode path callers use, and compared:

- **self**: its vectors of its own canary texts against its references, text by text
  (cosine ≥ `canary_min_cosine`): catches wrong or broken weights behind a copied directory;
- **document pool**: its vectors of the space's reference canaries (those of the first
  verified document replica) against those references, when its own set differs;
- **query pool**: agreement with the document pool: how much better its vectors of the
  space's reference texts match the document references of the same texts than those of the
  other texts (`models/canaries.agreement_margin` ≥ `canary_min_agreement`; the shipped
  students score 0.46–0.56, another model ~0): a model from another space fails even if its
  own canaries were made by it.

A replica that fails stays out of rotation (GetInfo's `replica_states` and the log say why,
`aegis.gateway.canary.checks{result="fail"}` counts it) until a later check passes; admitted
replicas are checked again every `canary_interval_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np

from aegis.encoder.v1 import encoder_pb2
from aegis_serve.common.errors import ServiceError
from aegis_serve.gateway.pools import Pool, Replica
from aegis_serve.models.canaries import CanarySet, agreement_margin, row_cosines
from aegis_serve.settings import GatewaySettings
from aegis_serve.telemetry.instruments import gateway_instruments

log = logging.getLogger(__name__)

PENDING = "awaiting its canary check"
# A check embeds 16 short texts: one batch; allow a busy replica's queue ahead of it.
CHECK_TIMEOUT_S = 15.0


@dataclass
class Verdict:
    """What one check found: `problem` empty when the replica passed (or was not checkable:
    `verified` False then)."""

    problem: str = ""
    verified: bool = False
    with_reference: bool = False


class CanaryGuard:
    """Holds joining replicas out until checked; checks admitted ones periodically."""

    def __init__(self, settings: GatewaySettings, document: Pool) -> None:
        self.interval_s = settings.canary_interval_s
        self.min_cosine = settings.canary_min_cosine
        self.min_agreement = settings.canary_min_agreement
        self.document = document
        self.checks = gateway_instruments().canary_checks

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    # ------------------------------------------------------------ probe side
    def hold(self, replica: Replica, info: encoder_pb2.GetInfoResponse, was_healthy: bool) -> str:
        """Called by the pool's probe when the replica answered: the reason to keep it out of
        rotation for now ('' = none)."""
        if not self.enabled:
            return ""
        identity = _identity(info)
        if identity != replica.checked_identity:
            replica.refused = ""  # a new identity gets a new check
            return PENDING
        if replica.refused:
            return replica.refused
        if not was_healthy:  # rejoined (restart, failure): check it again before traffic
            return PENDING
        return ""

    # ------------------------------------------------------------ check side
    def reference(self) -> CanarySet | None:
        """The space's reference canaries: those of a verified document replica."""
        for r in self.document.replicas:
            if r.verified and r.info is not None:
                own = CanarySet.from_proto(r.info.canaries)
                if own is not None:
                    return own
        return None

    def due(self, replica: Replica, reference: CanarySet | None, now: float) -> bool:
        if replica.info is None:
            return False
        if replica.problem == PENDING:
            return True
        if replica.refused:  # refused replicas get another chance every interval
            return now - replica.checked_at >= self.interval_s
        if replica.healthy and reference is not None and not replica.checked_with_reference:
            return True  # admitted before the document pool had a reference
        return replica.healthy and now - replica.checked_at >= self.interval_s

    async def check_pool(self, pool: Pool) -> None:
        """Run the checks that are due in `pool`, concurrently, and apply the verdicts."""
        if not self.enabled:
            return
        reference = self.reference() if pool is not self.document else None
        now = time.monotonic()
        due = [r for r in pool.replicas if self.due(r, reference, now)]
        if pool is self.document:
            # Document replicas are checked one after another: the first verified one's
            # canaries become the reference the others (and the query pool) are held to.
            for r in due:
                await self._check_and_apply(pool, r, self.reference())
        else:
            await asyncio.gather(*(self._check_and_apply(pool, r, reference) for r in due))

    async def _check_and_apply(
        self, pool: Pool, replica: Replica, reference: CanarySet | None
    ) -> None:
        assert replica.info is not None
        pending = replica.problem == PENDING
        try:
            verdict = await self.verify(pool.role, replica, reference)
        except (ServiceError, TimeoutError, asyncio.TimeoutError) as exc:
            why = getattr(exc, "message", "") or type(exc).__name__
            self.checks.add(1, {"pool": pool.role, "result": "error"})
            if pending:  # stays out; tried again at the next probe
                replica.problem = f"{PENDING} (could not run: {why})"
                log.warning("%s replica %s: canary check could not run: %s",
                            pool.role, replica.target, why)  # fmt: skip
            else:  # admitted (or refused) stays so; tried again after an interval, not at once
                replica.checked_at = time.monotonic()
            return
        replica.checked_at = time.monotonic()
        replica.checked_identity = _identity(replica.info)
        replica.checked_with_reference = verdict.with_reference
        if verdict.problem:
            self.checks.add(1, {"pool": pool.role, "result": "fail"})
            if replica.refused != verdict.problem:
                log.error("%s replica %s refused: %s", pool.role, replica.target, verdict.problem)
            replica.refused = replica.problem = verdict.problem
            replica.healthy = replica.verified = False
            return
        self.checks.add(1, {"pool": pool.role, "result": "pass" if verdict.verified else "skip"})
        recovered = bool(replica.refused)
        if recovered or pending:  # a recovery is news; a first admission is routine
            how = "verified by canaries" if verdict.verified else "admitted without canaries"
            level = logging.INFO if recovered else logging.DEBUG
            log.log(level, "%s replica %s %s", pool.role, replica.target, how)
        if not verdict.verified and pending:
            log.warning(
                "%s replica %s has no canaries and there is no reference to check it "
                "against: its space identity is declared, not verified",
                pool.role, replica.target,
            )  # fmt: skip
        replica.refused = ""
        replica.verified = verdict.verified
        if pending or recovered or replica.problem.startswith(PENDING):
            replica.healthy, replica.problem = True, ""

    async def verify(self, role: str, replica: Replica, reference: CanarySet | None) -> Verdict:
        """Embed canaries through `replica` and compare (raises on a failed call)."""
        assert replica.info is not None
        own = CanarySet.from_proto(replica.info.canaries)
        if own is not None:
            worst = await _worst_cosine(replica, own)
            if worst < self.min_cosine:
                return Verdict(
                    f"canary check failed: its vectors of its own canary texts differ from "
                    f"the references in its model directory (worst cosine {worst:.3f} < "
                    f"{self.min_cosine:g}): it serves other weights than it declares"
                )
        if reference is None or (own is not None and own.digest == reference.digest):
            return Verdict(verified=own is not None, with_reference=reference is not None)
        if role == self.document.role:
            worst = await _worst_cosine(replica, reference)
            if worst < self.min_cosine:
                return Verdict(
                    f"canary check failed: its vectors of the space's canary texts differ "
                    f"from the document pool's references (worst cosine {worst:.3f} < "
                    f"{self.min_cosine:g}): another model than the pool's"
                )
            return Verdict(verified=True, with_reference=True)
        got = await _embed(replica, reference.texts, "")
        agreement = agreement_margin(got, reference.vectors)
        if agreement < self.min_agreement:
            return Verdict(
                f"canary check failed: its query vectors match the document pool's vectors "
                f"of the same canary texts no better than those of other texts (agreement "
                f"margin {agreement:.3f} < {self.min_agreement:g}): it does not write into "
                f"space {replica.info.space_id!r} whatever it declares"
            )
        return Verdict(verified=True, with_reference=True)


def _identity(info: encoder_pb2.GetInfoResponse) -> tuple[str, str, int, str]:
    return (info.model, info.space_id, info.dimensions, info.canaries.digest)


async def _worst_cosine(replica: Replica, canaries: CanarySet) -> float:
    """The lowest cosine between the replica's vectors of the canary texts (with the prompt
    the references were made with) and the references."""
    got = await _embed(replica, canaries.texts, canaries.prompt_name)
    return float(np.min(row_cosines(got, canaries.vectors)))


async def _embed(replica: Replica, texts: tuple[str, ...], prompt_name: str) -> np.ndarray:
    request = encoder_pb2.EncodeRequest(texts=list(texts), prompt_name=prompt_name)
    encoded = await asyncio.wait_for(
        replica.encode(request, CHECK_TIMEOUT_S, ()), CHECK_TIMEOUT_S + 1
    )
    return np.asarray(encoded.matrix, dtype=np.float32)
