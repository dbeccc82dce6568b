"""Fuzzing in CI: hypothesis drives the targets of ``fuzz/targets.py``.

The same target functions run for hours under atheris (``make fuzz``, and 30 s each in CI
through ``make fuzz-ci``). Here each gets inputs — random bytes and mutations of
well-formed PDUs, command sets, P-DATA streams and the DCMTK-recorded sessions of
``fuzz/recorded`` — and must raise nothing but what it documents (``PDUError`` from the
codec and framer, ``CommandError`` and ``DimseProtocolError`` from DIMSE, all
``DicomWireError`` subclasses, are handled inside the targets exactly as the node handles
them), within a time bound per input. Memory is bounded separately: PDU headers announcing
lengths near 2^32 must not allocate what they announce.

Two budgets:

- ``test_fuzz_*``: a few hundred inputs per target, derandomized under ``CI=true``
  (hypothesis's ``ci`` profile): the same inputs every run, about 2 s in all;
- ``test_explore`` (marked ``fuzz``; ``-m "not fuzz"`` leaves it out locally): not
  derandomized, no example database, new inputs every run for a time box per target,
  :data:`EXPLORE_SECONDS` in all (``DICOMWIRE_FUZZ_SECONDS``, 60 by default). Any failing
  input it finds, and any crash ``make fuzz-ci`` finds, is kept under
  ``tests/fuzz_regressions/<target>/`` and replayed by ``test_regression_inputs``.

- PDU decode (PS3.8 §9.3): ``PDUError`` or a byte-exact re-encoding;
- the framer (§9.3.1): chunking never changes the PDUs, buffering stays bounded;
- command set decode (PS3.7 §6.3.1, §9.3, §10.3): ``CommandError`` only;
- association negotiation (§9.3.2-9.3.4, PS3.7 Annex D): every decodable RQ gets an
  answer that encodes; every decodable AC is readable;
- the DIMSE dispatcher (PS3.7 §7.5, Annex D.3.3.3): windows never exceeded, every
  response answers its request's Message ID;
- the whole acceptor (Table 9-10) through the sans-I/O core and the dispatcher: no
  exception, Sta1 at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from dicomwire.ul.framer import PDUFramer
from dicomwire.ul.identifiers import WireStr
from dicomwire.ul.machine import UpperLayer
from dicomwire.ul.negotiation import RequestorConfig, build_request
from dicomwire.ul.pdu import AAssociateRQ, PDUError, UserIdentityRQItem, decode

FUZZ_DIR = Path(__file__).resolve().parents[2] / "fuzz"
REGRESSIONS = Path(__file__).resolve().parents[1] / "fuzz_regressions"


def _load_targets() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dicomwire_fuzz_targets", FUZZ_DIR / "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


targets = _load_targets()

#: Per input; generous for slow CI machines (a typical input takes well under 10 ms).
TIME_BOUND = 2.0
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A seed with up to five mutations: byte set, bit flip, cut, insert, length field."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 5))):
        operation = draw(st.integers(0, 4))
        if operation == 0 and data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        elif operation == 1 and data:
            data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif operation == 2:
            del data[draw(st.integers(0, len(data))) :]
        elif operation == 3:
            position = draw(st.integers(0, len(data)))
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif len(data) >= 7:  # a PDU (or, behind the chunking byte, stream) length field
            offset = draw(st.sampled_from([2, 3]))
            data[offset : offset + 4] = draw(st.integers(0, 0xFFFFFFFF)).to_bytes(4, "big")
    return bytes(data)


def inputs(target: str) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=512), mutated(targets.seeds(target)))


def bounded(target: Callable[[bytes], None], data: bytes) -> None:
    start = time.perf_counter()
    target(data)
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_BOUND, f"{elapsed:.2f} s for {len(data)} bytes"


def test_targets_accept_their_seeds() -> None:
    for name, target in targets.TARGETS.items():
        seeds = targets.seeds(name)
        assert seeds
        for seed in seeds:
            bounded(target, seed)


@FUZZ
@given(inputs("pdu"))
def test_fuzz_pdu_decode(data: bytes) -> None:
    bounded(targets.pdu_decode, data)


@FUZZ
@given(inputs("framer"))
def test_fuzz_framer(data: bytes) -> None:
    bounded(targets.framer, data)


@FUZZ
@given(st.one_of(st.binary(max_size=256), mutated(targets.seeds("command"))))
def test_fuzz_command_set_decode(data: bytes) -> None:
    bounded(targets.command_decode, data)


@FUZZ
@given(inputs("negotiation"))
def test_fuzz_association_negotiation(data: bytes) -> None:
    bounded(targets.negotiation, data)


@FUZZ
@given(inputs("dimse"))
def test_fuzz_dimse_dispatcher(data: bytes) -> None:
    bounded(targets.dimse, data)


@FUZZ
@given(inputs("acceptor"))
def test_fuzz_whole_acceptor(data: bytes) -> None:
    bounded(targets.acceptor, data)


# --------------------------------------------------------------------------- exploring

#: Seconds of exploration in all, shared equally by the targets.
EXPLORE_SECONDS = float(os.environ.get("DICOMWIRE_FUZZ_SECONDS", "60"))
#: Not derandomized (new inputs every run), nothing stored or replayed from a database;
#: the explicit seeds first, then generation, shrinking what fails. Examples are run in
#: rounds of this many until the target's time box is spent.
EXPLORE = settings(
    derandomize=False,
    database=None,
    max_examples=100,
    deadline=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


def keep_regression(target: str, data: bytes) -> Path:
    """Keep a failing input where ``test_regression_inputs`` replays it."""
    directory = REGRESSIONS / target
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / hashlib.sha1(data).hexdigest()
    path.write_bytes(data)
    return path


@pytest.mark.fuzz
@pytest.mark.parametrize("name", list(targets.TARGETS))
def test_explore(name: str) -> None:
    """Mutated seeds (codec and DCMTK recordings) and random bytes for a time box."""
    target = targets.TARGETS[name]
    failing: list[bytes] = []  # the last input that failed: the shrunk one, at the end

    @EXPLORE
    @given(inputs(name))
    def explore(data: bytes) -> None:
        try:
            bounded(target, data)
        except BaseException:
            failing.append(data)
            raise

    deadline = time.monotonic() + EXPLORE_SECONDS / len(targets.TARGETS)
    rounds = 0
    while rounds == 0 or time.monotonic() < deadline:
        try:
            explore()
        except BaseException:
            if failing:
                path = keep_regression(name, failing[-1])
                print(f"failing input kept as {path} (commit it)", file=sys.stderr)
            raise
        rounds += 1


def test_regression_inputs() -> None:
    """Every input fuzzing ever found failing (hypothesis or atheris) passes now."""
    found = sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file() and p.name != "README.md")
    for path in found:
        target = targets.TARGETS[path.parent.name]
        bounded(target, path.read_bytes())


def test_the_seeds_include_the_dcmtk_recordings() -> None:
    """The CI fuzzing starts from the recorded DCMTK sessions, not only the codec's seeds."""
    sessions = targets.recorded_sessions()
    assert len(sessions) >= 4 and all(client and server for client, server in sessions)
    for name in targets.TARGETS:
        recorded = targets.recorded_seeds(name)
        assert recorded and set(recorded) <= set(targets.seeds(name)), name


# --------------------------------------------------------------------------- structured

UIDS = st.lists(st.integers(0, 10**9), min_size=1, max_size=5).map(
    lambda parts: "1.2." + ".".join(map(str, parts))
)
AE_TITLES = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1, max_size=16)


@st.composite
def requests(draw: st.DrawFn) -> AAssociateRQ:
    contexts = draw(
        st.lists(st.tuples(UIDS, st.lists(UIDS, min_size=1, max_size=3)), min_size=1, max_size=8)
    )
    identity = draw(
        st.none()
        | st.builds(
            UserIdentityRQItem,
            st.integers(1, 5),
            st.integers(0, 1),
            st.binary(max_size=64),
            st.binary(max_size=32),
        )
    )
    window = draw(st.none() | st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)))
    config = RequestorConfig(
        draw(AE_TITLES),
        draw(AE_TITLES),
        contexts,
        max_pdu_length=draw(st.integers(0, 0xFFFFFFFF)),
        maximum_invoked=window[0] if window else None,
        maximum_performed=window[1] if window else None,
        roles={uid: (draw(st.booleans()), draw(st.booleans())) for uid, _ in contexts[:2]},
        user_identity=identity,
        extended_negotiation={contexts[0][0]: draw(st.binary(max_size=8))},
    )
    request, _ = build_request(config)
    return request


@settings(FUZZ, max_examples=100)
@given(requests())
def test_generated_requests_round_trip_and_get_answers(request: AAssociateRQ) -> None:
    """decode(encode(rq)) re-encodes byte for byte, keeps every field, and is answered."""
    encoded = request.encode()
    decoded = decode(encoded)
    assert isinstance(decoded, AAssociateRQ)
    assert decoded.encode() == encoded
    assert decoded.calling_ae_title == request.calling_ae_title
    assert [c.transfer_syntaxes for c in decoded.presentation_contexts] == [
        c.transfer_syntaxes for c in request.presentation_contexts
    ]
    assert decoded.user_information == request.user_information
    bounded(targets.negotiation, encoded)
    bounded(targets.acceptor, b"\x00" + encoded)


def test_wire_strings_survive_a_round_trip() -> None:
    odd = WireStr.from_wire(b"1.02.\x00 3")
    request, _ = build_request(RequestorConfig("A", "B", [("1.2.3", ["1.2.840.10008.1.2"])]))
    request.presentation_contexts[0].sub_items[0].name = odd
    encoded = request.encode()
    assert decode(encoded).encode() == encoded


# --------------------------------------------------------------------------- memory

HUGE = 0xFFFFFFFF


@pytest.mark.parametrize("pdu_type", range(1, 8))
def test_a_huge_length_is_not_allocated(pdu_type: int) -> None:
    """A header announcing 4 GiB (PS3.8 §9.3.1) costs kilobytes, with and without limits."""
    header = bytes([pdu_type, 0]) + HUGE.to_bytes(4, "big")
    tracemalloc.start()
    try:
        for framer in (PDUFramer(), PDUFramer(16384, 1 << 16)):
            with contextlib.suppress(PDUError):
                framer.feed(header + bytes(1000))
            assert framer.buffered <= 1006
        core = UpperLayer(requestor=False, max_pdu_length=16384)
        core.transport_connected()
        core.receive_data(header)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"peak {peak} bytes"


def test_an_unlimited_p_data_grows_only_with_what_arrives() -> None:
    framer = PDUFramer(0)  # Maximum Length 0: no limit was announced
    header = b"\x04\x00" + HUGE.to_bytes(4, "big")
    tracemalloc.start()
    try:
        assert framer.feed(header + bytes(100_000)) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert framer.buffered == 100_006
    assert peak < 4 << 20, f"peak {peak} bytes"
