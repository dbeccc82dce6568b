"""Judges: what the standard requires of the SCP's answer, as reusable parameterised checks.

Each factory returns a :data:`~.model.Judge` that turns an :class:`~.probe.Exchange` into a
:class:`~.model.Finding`. They encode the actions of PS3.8 Table 9-10 (AA-1, AA-2/AA-3
closes, AA-8 with the reasons of Table 9-26), the A-ASSOCIATE-RJ results, sources and
reasons of Table 9-21, the presentation context results of Table 9-18, the user
information answers of PS3.7 Annex D.3.3 and the DIMSE responses of PS3.7 §9.3. A judge
that accepts an association leaves it with an A-RELEASE-RQ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ...dimse.commands import CommandError, CommandField, validate_command
from ...ul.pdu import (
    AAssociateAC,
    AAssociateRJ,
    AAssociateRQ,
    AReleaseRP,
    PDataTF,
    UserInformationItem,
)
from ..rawpeer import Message, describe
from .model import Finding, Judge, Observation
from .probe import Exchange

__all__ = [
    "AnswerCheck",
    "aa1",
    "aa8",
    "aborted_not_answered",
    "aborted_or_closed",
    "accepted",
    "accepted_or_rejected",
    "asynchronous_window_within",
    "closes",
    "contexts_answered",
    "echo_answered",
    "every_context_answered",
    "identity_answered",
    "message_text",
    "negotiated",
    "rejected",
    "rejected_or_aborted",
    "released",
    "release_collision_answered",
    "roles_granted",
    "rq_fields_echoed",
    "store_answered",
]

#: A check of an accepted association's A-ASSOCIATE-AC.
AnswerCheck = Callable[[Exchange, AAssociateAC], Finding]


def message_text(message: Message) -> str:
    """A DIMSE message in words: its command name and status."""
    field_value = message.command_field
    try:
        name = CommandField(field_value).name.replace("_", "-")
    except ValueError:
        name = f"command 0x{field_value:04X}"
    status = message.status
    return name + (f" status 0x{status:04X}" if status is not None else "")


# -- PS3.8 Table 9-10 actions ------------------------------------------------------------------


def aa1(reason: int) -> Judge:
    """AA-1: an A-ABORT; with the provider source it must carry ``reason`` (Table 9-26)."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        abort = obs.abort
        if abort is None:
            return Finding.failed(f"{obs}; AA-1 sends an A-ABORT")
        if abort.source == 0 or (abort.source == 2 and abort.reason == reason):
            return Finding.passed(str(obs))
        return Finding.failed(
            f"{obs}; expected source 0 (any reason) or source 2 with reason {reason}"
        )

    return judge


def _aa8(obs: Observation, reason: int | None) -> Finding:
    abort = obs.abort
    if abort is None:
        return Finding.failed(f"{obs}; AA-8 sends an A-ABORT (source 2)")
    if abort.source == 2 and (reason is None or abort.reason == reason):
        return Finding.passed(str(obs))
    wanted = f"source 2, reason {reason}" if reason is not None else "source 2"
    return Finding.failed(f"{obs}; expected {wanted}")


def aa8(reason: int | None, *, if_answered: str | None = None) -> Judge:
    """AA-8: an A-ABORT with the service-provider source (2) and ``reason`` (None: any).

    ``if_answered`` names the failure when the SCP answers with a P-DATA-TF instead.
    """

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if if_answered is not None and obs.kind == "pdu" and isinstance(obs.pdu, PDataTF):
            return Finding.failed(f"{obs}: {if_answered}; expected an A-ABORT")
        return _aa8(obs, reason)

    return judge


def closes(rule: str) -> Judge:
    """AA-2, AA-3 or ARTIM expiry: the connection closed without a PDU (``rule`` if not)."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if obs.kind == "closed":
            return Finding.passed(str(obs))
        return Finding.failed(f"{obs}; {rule}")

    return judge


def aborted_or_closed() -> Judge:
    """An A-ABORT, a close, or silence (ARTIM pending); no other PDU and no garbage."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if obs.kind == "pdu" and obs.abort is None:
            return Finding.failed(f"{obs}; only an A-ABORT or a close fit here")
        if obs.kind == "garbage":
            return Finding.failed(str(obs))
        return Finding.passed(str(obs))

    return judge


def released() -> Judge:
    """AR-2 then AR-4: an A-RELEASE-RP."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if isinstance(obs.pdu, AReleaseRP):
            return Finding.passed(str(obs))
        return Finding.failed(f"{obs}; expected A-RELEASE-RP")

    return judge


def release_collision_answered() -> Judge:
    """Two RQs met the SCP in Sta8 (AA-8, reason 2) or Sta13 (AA-6: nothing follows)."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if obs.abort is not None:
            return _aa8(obs, 2)
        if not isinstance(obs.pdu, AReleaseRP):
            return Finding.failed(f"{obs}; expected A-RELEASE-RP or A-ABORT (2, 2)")
        probe = exchange.probe
        after = await probe.observe(exchange.peer, min(probe.target.timeout, 1.0))
        if after.kind == "pdu":
            return Finding.failed(f"{obs}, then {after}; Sta13 ignores the second RQ (AA-6)")
        return Finding.passed(f"{obs}, then {after}")

    return judge


def aborted_not_answered() -> Judge:
    """A PDV the SCP cannot interpret: an A-ABORT (any source), not a P-DATA-TF answer."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if obs.abort is not None:
            return Finding.passed(str(obs))
        if isinstance(obs.pdu, PDataTF):
            return Finding.failed(f"{obs}: answered as if the context were valid; expected A-ABORT")
        return Finding.failed(f"{obs}; expected an A-ABORT")

    return judge


# -- association negotiation (PS3.8 §9.3.2-9.3.4, PS3.7 Annex D.3.3) --------------------------


def _rejection(obs: Observation, source: int, reason: int, expected: str) -> Finding:
    """Pass an A-ASSOCIATE-RJ with a valid result (1 or 2) and this source and reason."""
    rj = obs.pdu if isinstance(obs.pdu, AAssociateRJ) else None
    if rj is not None and rj.result in (1, 2) and rj.source == source and rj.reason == reason:
        return Finding.passed(str(obs))
    return Finding.failed(f"{obs}; expected {expected}")


def rejected(source: int, reason: int) -> Judge:
    """An A-ASSOCIATE-RJ with result 1 or 2 and this source and reason (Table 9-21)."""

    async def judge(exchange: Exchange) -> Finding:
        return _rejection(exchange.observed, source, reason, f"RJ (1|2, {source}, {reason})")

    return judge


def accepted_or_rejected(reason: int, what: str) -> Judge:
    """Policy: an AC (the SCP accepts any ``what``) or an RJ with source 1 and ``reason``."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if isinstance(obs.pdu, AAssociateAC):
            return Finding.passed(f"{obs}: the SCP accepts any {what}")
        return _rejection(obs, 1, reason, f"an AC or RJ (1|2, 1, {reason})")

    return judge


def rejected_or_aborted(source: int, reason: int) -> Judge:
    """An A-ABORT, or an A-ASSOCIATE-RJ with this source and reason; never an AC."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if obs.abort is not None:
            return Finding.passed(str(obs))
        return _rejection(obs, source, reason, f"RJ (1|2, {source}, {reason}) or an A-ABORT")

    return judge


def accepted(check: AnswerCheck | None = None) -> Judge:
    """An A-ASSOCIATE-AC (then released), whose content ``check`` judges when given."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if not isinstance(obs.pdu, AAssociateAC):
            return Finding.failed(f"{obs}; expected A-ASSOCIATE-AC")
        await exchange.release()
        return Finding.passed(str(obs)) if check is None else check(exchange, obs.pdu)

    return judge


def rq_fields_echoed(exchange: Exchange, answer: AAssociateAC) -> Finding:
    """The AC's bytes 11-74 are those of the RQ (Table 9-17)."""
    assert isinstance(exchange.sent, AAssociateRQ)
    obs = exchange.observed
    sent = exchange.sent.encode()[10:74]
    received = answer.encode()[10:74]
    if sent == received:
        return Finding.passed(f"{obs}; bytes 11-74 echoed")
    differing = [i + 11 for i in range(64) if sent[i] != received[i]]
    return Finding.failed(
        f"{obs}; bytes {differing[0]}-{differing[-1]} differ from the RQ's "
        f"(sent {sent[32:].hex()}, got {received[32:].hex()} in bytes 43-74)"
    )


def contexts_answered(results: Mapping[int, int]) -> Judge:
    """An AC whose presentation context results (Table 9-18) are ``results`` by ID."""
    expected = ", ".join(f"{context_id}:{result}" for context_id, result in results.items())

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if not isinstance(obs.pdu, AAssociateAC):
            return Finding.failed(f"{obs}; expected an AC")
        answered = {c.context_id: c.result for c in obs.pdu.presentation_contexts}
        await exchange.release()
        if answered == dict(results):
            return Finding.passed(str(obs))
        return Finding.failed(f"{obs}; expected results {expected}")

    return judge


def identity_answered(*, response_requested: bool) -> Judge:
    """User identity (PS3.7 D.3.3.7): an AC, with a server response only when requested,
    or an RJ with source 1 and reason 1."""

    async def judge(exchange: Exchange) -> Finding:
        obs = exchange.observed
        if not isinstance(obs.pdu, AAssociateAC):
            return _rejection(obs, 1, 1, "an AC or RJ (1|2, 1, 1)")
        info = obs.pdu.user_information or UserInformationItem()
        response = info.user_identity_response
        await exchange.release()
        if response_requested:
            extra = "no server response" if response is None else "a server response (59H)"
            return Finding.passed(f"{obs} with {extra}")
        if response is not None:
            return Finding.failed(f"{obs} with a server response (59H) nobody asked for")
        return Finding.passed(f"{obs} without a server response")

    return judge


def negotiated(check: Callable[[AAssociateAC], Finding]) -> Judge:
    """The answer to a whole association request: an AC (then released) that ``check``
    approves."""

    async def judge(exchange: Exchange) -> Finding:
        answer = exchange.answer
        if not isinstance(answer, AAssociateAC):
            return Finding.failed(f"{describe(answer)}; expected an AC")
        await exchange.release()
        return check(answer)

    return judge


def roles_granted(proposed: Mapping[str, tuple[bool, bool]]) -> Callable[[AAssociateAC], Finding]:
    """Role selection replies (PS3.7 D.3.3.4) name proposed SOP classes and grant no role
    beyond the proposal; ``proposed`` maps SOP class UID to (SCU, SCP)."""

    def check(answer: AAssociateAC) -> Finding:
        info = answer.user_information or UserInformationItem()
        replies = info.role_selections
        problems = []
        for reply in replies:
            wanted = proposed.get(str(reply.sop_class_uid))
            if wanted is None:
                problems.append(f"a reply for {reply.sop_class_uid}, never proposed")
                continue
            if (reply.scu_role and not wanted[0]) or (reply.scp_role and not wanted[1]):
                problems.append(
                    f"{reply.sop_class_uid}: granted SCU={reply.scu_role} "
                    f"SCP={reply.scp_role} for a proposal of SCU={int(wanted[0])} "
                    f"SCP={int(wanted[1])}"
                )
            if reply.scu_role not in (0, 1) or reply.scp_role not in (0, 1):
                problems.append(f"{reply.sop_class_uid}: role values must be 0 or 1")
        text = ", ".join(f"{r.sop_class_uid}: SCU={r.scu_role} SCP={r.scp_role}" for r in replies)
        observed = f"{describe(answer)}; role replies: {text or 'none'}"
        if problems:
            return Finding.failed(f"{observed}; " + "; ".join(problems))
        return Finding.passed(observed)

    return check


def asynchronous_window_within(invoked: int, performed: int) -> Callable[[AAssociateAC], Finding]:
    """No window reply (1, 1 applies; PS3.7 D.3.3.3), or one of at most the proposed
    values and not 0 (unlimited)."""

    def check(answer: AAssociateAC) -> Finding:
        info = answer.user_information or UserInformationItem()
        window = info.asynchronous_operations_window
        if window is None:
            return Finding.passed(f"{describe(answer)} without a window reply (1, 1)")
        text = (
            f"{describe(answer)} with window ({window.maximum_invoked}, {window.maximum_performed})"
        )
        if 1 <= window.maximum_invoked <= invoked and 1 <= window.maximum_performed <= performed:
            return Finding.passed(text)
        return Finding.failed(f"{text}; expected 1..{invoked} invoked and 1..{performed} performed")

    return check


def every_context_answered(count: int) -> Callable[[AAssociateAC], Finding]:
    """One answer for each of ``count`` proposed contexts (odd IDs from 1)."""

    def check(answer: AAssociateAC) -> Finding:
        ids = sorted(c.context_id for c in answer.presentation_contexts)
        accepted_count = sum(1 for c in answer.presentation_contexts if c.result == 0)
        text = f"A-ASSOCIATE-AC with {len(ids)} context answers, {accepted_count} accepted"
        if ids == list(range(1, 2 * count, 2)):
            return Finding.passed(text)
        return Finding.failed(f"{text}; expected one answer for each of the {count} IDs")

    return check


# -- DIMSE answers (PS3.7 §9.3) ------------------------------------------------------------------


def echo_answered(what: str, *, tolerate_abort: bool = False) -> Judge:
    """A valid C-ECHO-RSP with status 0000 for the C-ECHO-RQ sent ``what`` (e.g. "split at
    many boundaries"); ``tolerate_abort`` also passes an A-ABORT (a refusal)."""

    async def judge(exchange: Exchange) -> Finding:
        message = exchange.message
        if message is None:
            obs = exchange.observed
            if tolerate_abort and obs.abort is not None:
                return Finding.passed(f"{obs}: refused")
            return Finding.failed(f"{obs}; expected a C-ECHO-RSP")
        text = f"{message_text(message)} for a C-ECHO-RQ {what}"
        try:
            validate_command(message.command)
        except CommandError as exc:
            return Finding.failed(f"{text}: invalid command set: {exc}")
        if (
            message.command_field == CommandField.C_ECHO_RSP
            and message.message_id_being_responded_to == exchange.message_id
            and message.status == 0
        ):
            await exchange.release()
            return Finding.passed(text)
        return Finding.failed(f"{text}; expected C-ECHO-RSP status 0000")

    return judge


def store_answered(what: str) -> Judge:
    """A C-STORE-RSP with success (0000) or a warning (Bxxx) for the C-STORE-RQ sent
    ``what``."""

    async def judge(exchange: Exchange) -> Finding:
        message = exchange.message
        if message is None:
            return Finding.failed(f"{exchange.observed}; expected a C-STORE-RSP")
        text = f"{message_text(message)} for a C-STORE-RQ {what}"
        status = message.status
        if (
            message.command_field == CommandField.C_STORE_RSP
            and message.message_id_being_responded_to == exchange.message_id
            and status is not None
            and (status == 0 or 0xB000 <= status <= 0xBFFF)
        ):
            await exchange.release()
            return Finding.passed(text)
        return Finding.failed(f"{text}; expected C-STORE-RSP success or warning")

    return judge
