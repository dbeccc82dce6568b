"""The MPPS relay: every accepted N-CREATE and N-SET passed on to other systems.

A RIS that is an MPPS SCP (PS3.4 F.7) forwards each message it accepts to the systems
that also follow the procedure (PACS, dose registry, billing). Each accepted message
becomes one durable job per destination in the node's job queue
(:class:`~dicomwire.services.jobs.SQLiteJobQueue`) before the SCU gets its answer, so a
restart loses nothing; the job's group is (destination, MPPS SOP Instance UID), so an
N-SET never overtakes its N-CREATE and the N-SETs of one step arrive in the order they
were accepted. A :class:`~dicomwire.services.jobs.JobRunner` sends them with the public
SCU API (:func:`dicomwire.connect` → ``Client.n_create`` / ``Client.n_set``), the node's
AE title calling, the destination found in the AE directory; an unreachable destination
is retried with backoff, then the job fails and stays in the queue for the operator.

Every attempt ends in one log line on ``dicomwire.services.mpps.relay`` naming the
message, the step, the destination and the outcome (INFO when delivered, WARNING when it
will be retried, ERROR when given up) — the audit trail of what went where.
"""

from __future__ import annotations

import base64
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ...dimse.status import DUPLICATE_SOP_INSTANCE, Category
from ...errors import DicomWireError, DimseStatusError, LocalProtocolError
from ..jobs import Job, JobQueue, JobRunner, RetryPolicy
from ..service import ScuActivity, StatusReaction

if TYPE_CHECKING:
    from ...ul.timeouts import Timeouts
    from ...ul.tls import TLSConfig
    from ..directory import RemoteAE

__all__ = ["MPPS_RELAY_ACTIVITY", "RELAY_KIND", "MPPSRelay"]

log = logging.getLogger("dicomwire.services.mpps.relay")

#: The job kind of relayed MPPS messages in the node's queue.
RELAY_KIND = "mpps-relay"
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"

#: What :meth:`MPPSRelay.deliver` does with the status a destination answers.
MPPS_RELAY_ACTIVITY = ScuActivity(
    "Relay procedure steps",
    "the node's MPPS relay ([mpps] relay_to)",
    (MPPS_SOP_CLASS,),
    "N-CREATE, N-SET",
    (
        StatusReaction(Category.SUCCESS, "delivered: the job is done (an INFO log line)"),
        StatusReaction(Category.WARNING, "delivered, as success"),
        StatusReaction(
            Category.FAILURE,
            "to an N-CREATE: an earlier attempt got through, delivered (to an N-SET: "
            "refused, as below)",
            (DUPLICATE_SOP_INSTANCE,),
        ),
        StatusReaction(
            Category.FAILURE,
            "out of resources: retried with back-off until the retry policy's max_attempts, "
            "then failed (kept in the job queue, an ERROR log line)",
            ((0xA700, 0xA7FF),),
        ),
        StatusReaction(
            Category.FAILURE,
            "refused: given up at once; the job fails and stays in the queue for the "
            "operator (an ERROR log line)",
        ),
    ),
)
N_CREATE = "N-CREATE"
N_SET = "N-SET"


class MPPSRelay:
    """Queues accepted MPPS messages per destination and delivers them in order.

    ``resolve(ae_title)`` finds a destination in the AE directory; ``tls_for(entry)``
    gives the TLS settings to call it with (None: plain TCP). ``counts`` tallies
    outcomes (``delivered``, ``retried``, ``failed``) for the operator and the tests.
    """

    def __init__(
        self,
        queue: JobQueue,
        destinations: Sequence[str],
        *,
        resolve: Callable[[str], RemoteAE],
        calling_ae: str,
        timeouts: Timeouts,
        policy: RetryPolicy,
        tls_for: Callable[[RemoteAE], TLSConfig | None] = lambda entry: None,
        concurrency: int = 4,
        poll: float = 1.0,
    ) -> None:
        self.queue = queue
        self.destinations = tuple(destinations)
        self.resolve = resolve
        self.calling_ae = calling_ae
        self.timeouts = timeouts
        self.policy = policy
        self.tls_for = tls_for
        self.counts: Counter[str] = Counter()
        self.runner = JobRunner(
            queue,
            [RELAY_KIND],
            self.deliver,
            policy=policy,
            owner=f"mpps-relay-{os.getpid()}",
            concurrency=concurrency,
            poll=poll,
            lease=max(120.0, 4 * (timeouts.dimse or 30.0)),
        )

    def enqueue(
        self,
        operation: str,
        uid: str,
        dataset: bytes | None,
        transfer_syntax: str,
        calling_ae: str,
    ) -> list[int]:
        """Put the message for every destination (durable when this returns); job ids."""
        payload: dict[str, Any] = {
            "operation": operation,
            "uid": uid,
            "dataset": base64.b64encode(bytes(dataset)).decode() if dataset else None,
            "transfer_syntax": transfer_syntax,
            "from": calling_ae,
        }
        return [
            self.queue.put(
                RELAY_KIND,
                {**payload, "destination": destination},
                key=uid,
                group=f"{destination}\\{uid}",
            )
            for destination in self.destinations
        ]

    def start(self) -> None:
        self.runner.start()

    def wake(self) -> None:
        self.runner.wake()

    async def stop(self, grace: float | None = 5.0) -> None:
        """Stop relaying; a message still being sent after ``grace`` s goes next start."""
        await self.runner.stop(grace)

    async def deliver(self, job: Job) -> None:
        """Send one queued message; raising makes it a failed attempt (see the runner)."""
        payload = job.payload
        operation, uid = payload["operation"], payload["uid"]
        destination = payload["destination"]
        what = f"relay {operation} {uid} from {payload.get('from') or '?'} to {destination}"
        attempt = job.attempts + 1
        try:
            status = await self._send(payload)
        except Exception as exc:
            permanent = isinstance(exc, DicomWireError) and exc.permanent
            error = f"{type(exc).__name__}: {exc}"
            if permanent or attempt >= self.policy.max_attempts:
                self.counts["failed"] += 1
                log.error("%s: FAILED, given up after attempt %d (%s)", what, attempt, error)
            else:
                self.counts["retried"] += 1
                log.warning(
                    "%s: not delivered, attempt %d (%s); retrying in %.1f s",
                    what,
                    attempt,
                    error,
                    self.policy.delay(attempt),
                )
            raise
        self.counts["delivered"] += 1
        log.info("%s: delivered (%s), attempt %d", what, status, attempt)

    async def _send(self, payload: dict[str, Any]) -> str:
        from ..client import connect

        entry = self.resolve(payload["destination"])
        assert entry.host is not None and entry.port is not None  # resolve() checked
        tls = self.tls_for(entry)
        if entry.tls and tls is None:
            raise LocalProtocolError(f"{entry.ae_title} is called over TLS but the node has none")
        dataset = None
        if payload.get("dataset"):
            from ...dimse.datasets import decode_dataset

            dataset = decode_dataset(
                base64.b64decode(payload["dataset"]), payload["transfer_syntax"]
            )
        async with connect(
            entry.host,
            entry.port,
            called_ae=entry.ae_title,
            calling_ae=self.calling_ae,
            services=["mpps"],
            timeouts=self.timeouts,
            tls=tls,
        ) as client:
            if payload["operation"] == N_CREATE:
                result = await client.n_create(MPPS_SOP_CLASS, dataset, payload["uid"])
                if result.status == DUPLICATE_SOP_INSTANCE:
                    # an earlier attempt got through before the node stopped: it is there
                    return f"{result.status}, already there"
            else:
                from pydicom import Dataset

                result = await client.n_set(
                    MPPS_SOP_CLASS, payload["uid"], dataset if dataset is not None else Dataset()
                )
        if result.status.is_failure:
            raise DimseStatusError(result.status, result.error_comment or "refused")
        return str(result.status)
