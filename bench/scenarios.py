"""The end-to-end scenarios of bench/compare.py (issue 7) and the command lines of each peer.

A :class:`Scenario` is a corpus, a way of sending it (one association, N simultaneous
associations, one association per instance), the receiver's mode (discard or write to
disk) and a max PDU; its :class:`Pair` rows are the sender -> receiver combinations run.
The DCMTK -> DCMTK pair of a scenario is its reference: every row's ratio divides by it.

Tools: ``dicomwire`` (``dicomwire store`` / ``dicomwire serve``), ``dcmtk`` (``storescu``
/ ``storescp``), ``pynetdicom`` (bench/pynetdicom_scu.py / bench/pynetdicom_scp.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from peers import DCMTK_PDU_RANGE, LOCALHOST, Tools

KiB = 1024
MiB = 1024 * KiB
PDU_128K = 128 * KiB
CALLED_AE = "DICOMWIRE"  # dicomwire serve's AE title; storescp and pynetdicom accept any


@dataclass(frozen=True)
class Pair:
    """One row: who sends, who receives, and what differs from the scenario's defaults."""

    sender: str
    receiver: str
    window: int = 1
    workers: int | None = None
    max_pdu: int | None = None  # overrides the scenario's (the DCMTK reference at 128 KiB)
    #: the row's ratio to DCMTK must be at most this (issue 7's targets)
    target: float | None = None

    @property
    def reference(self) -> bool:
        return self.sender == "dcmtk" and self.receiver == "dcmtk"

    @property
    def pynetdicom(self) -> bool:
        """pynetdicom rows take tens of seconds: --quick skips them."""
        return "pynetdicom" in (self.sender, self.receiver)

    def label(self, scenario: Scenario) -> str:
        text = f"{self.sender} -> {self.receiver}"
        notes = []
        if self.window > 1:
            notes.append(f"window {self.window}")
        if self.workers is not None:
            notes.append(f"{self.workers} worker{'s' if self.workers > 1 else ''}")
        if self.max_pdu is not None and self.max_pdu != scenario.max_pdu:
            notes.append(f"pdu {pdu_text(self.max_pdu)}")
        return text + (f" ({', '.join(notes)})" if notes else "")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    corpus: str  # "ct" | "small" | "gib"
    pairs: tuple[Pair, ...]
    max_pdu: int = PDU_128K
    disk: bool = False
    #: "one": one association; "parallel": ``associations`` at once; "each": one per file
    layout: str = "one"
    associations: int = 1
    #: report the receiver's peak RSS (and check it against this many bytes)
    rss_limit: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def pdu_of(self, pair: Pair) -> int:
        return self.max_pdu if pair.max_pdu is None else pair.max_pdu

    def slow(self, pair: Pair) -> bool:
        """Rows of tens of seconds a run: pynetdicom, or a storescu process per association."""
        return pair.pynetdicom or (self.layout == "each" and pair.sender == "dcmtk")


def pdu_text(length: int) -> str:
    if length == 0:
        return "unlimited"
    if length % MiB == 0:
        return f"{length // MiB} MiB"
    return f"{length // KiB} KiB"


def _core(*, target: float | None = 1.0, cross: float | None = 1.1) -> tuple[Pair, ...]:
    """The DCMTK reference, dicomwire -> dicomwire and the two cross pairs."""
    return (
        Pair("dcmtk", "dcmtk"),
        Pair("dicomwire", "dicomwire", target=target),
        Pair("dcmtk", "dicomwire", target=cross),
        Pair("dicomwire", "dcmtk", target=cross),
    )


_PYNETDICOM = (
    Pair("dcmtk", "pynetdicom"),
    Pair("pynetdicom", "dcmtk"),
    Pair("pynetdicom", "pynetdicom"),
)


def _pdu_scenario(length: int) -> Scenario:
    pairs = [Pair("dicomwire", "dicomwire")]  # issue 7 sets no target per PDU size
    low, high = DCMTK_PDU_RANGE
    reference = (
        Pair("dcmtk", "dcmtk") if low <= length <= high else Pair("dcmtk", "dcmtk", max_pdu=high)
    )
    notes = ()
    if reference.max_pdu is not None:
        notes = ("DCMTK's -pdu stops at 128 KiB: its row (the reference) runs at 128 KiB.",)
    return Scenario(
        f"pdu-{pdu_text(length).replace(' ', '').lower()}",
        f"1000 CT, one association, max PDU {pdu_text(length)}",
        "ct",
        (reference, *pairs),
        max_pdu=length,
        notes=notes,
    )


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "ct",
        "1000 CT 512x512, one association, receiver discarding",
        "ct",
        (*_core(), *_PYNETDICOM),
    ),
    Scenario(
        "small",
        "1000 small objects, one association, receiver discarding",
        "small",
        (*_core(), Pair("dicomwire", "dicomwire", window=16, target=0.5), *_PYNETDICOM),
        notes=("DCMTK has no asynchronous operations window; window 16 is dicomwire's.",),
    ),
    Scenario(
        "ct-disk",
        "1000 CT, one association, receiver writing files (no fsync)",
        "ct",
        _core(),
        disk=True,
        notes=("dicomwire serve --no-fsync; DCMTK storescp -od (never fsyncs).",),
    ),
    Scenario(
        "small-disk",
        "1000 small objects, one association, receiver writing files (no fsync)",
        "small",
        _core(),
        disk=True,
    ),
    Scenario(
        "assoc10",
        "10 simultaneous associations x 100 CT, receiver discarding",
        "ct",
        _core(target=None, cross=None),
        layout="parallel",
        associations=10,
        notes=(
            "dicomwire store --associations 10; DCMTK: 10 storescu processes at once, "
            "storescp --fork.",
        ),
    ),
    Scenario(
        "workers",
        "10 simultaneous associations x 100 CT, dicomwire serve --workers 1 vs 2",
        "ct",
        (
            Pair("dcmtk", "dcmtk"),
            Pair("dicomwire", "dicomwire", workers=1),
            Pair("dicomwire", "dicomwire", workers=2),
            # Ten storescu processes: the server's scaling without one sending process's
            # single core in the way.
            Pair("dcmtk", "dicomwire", workers=1),
            Pair("dcmtk", "dicomwire", workers=2),
        ),
        layout="parallel",
        associations=10,
        notes=("Target: 2 workers >= 1.6x faster than 1; rows are n/a if serve has no --workers.",),
    ),
    Scenario(
        "assoc1000",
        "1000 associations x 1 small object, one after the other, receiver discarding",
        "small",
        _core(target=None, cross=None),
        layout="each",
        notes=(
            "DCMTK: 1000 storescu processes in a row (process start-up included); "
            "dicomwire: bench/dicomwire_each.py, 1000 associations in one process.",
        ),
    ),
    Scenario(
        "gib",
        "one 1 GiB multi-frame CT, receiver discarding (receiver peak RSS)",
        "gib",
        (*_core(), Pair("dcmtk", "pynetdicom")),
        rss_limit=150 * 1000 * 1000,
        notes=("Target: dicomwire serve's peak RSS < 150 MB.",),
    ),
    *(_pdu_scenario(length) for length in (16 * KiB, PDU_128K, MiB, 0)),
)

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


# --------------------------------------------------------------------------- command lines


class Unsupported(Exception):
    """This peer cannot run this row (shown as n/a with the reason)."""


def _dcmtk_pdu(length: int) -> str:
    low, high = DCMTK_PDU_RANGE
    if not low <= length <= high:
        raise Unsupported(f"DCMTK max PDU is {low}..{high}")
    return str(length)


def receiver_argv(
    tools: Tools, scenario: Scenario, pair: Pair, port: int, directory: Path
) -> list[str]:
    """The receiver's command line; it stores under ``directory`` in disk scenarios."""
    pdu = scenario.pdu_of(pair)
    tool = pair.receiver
    if tool == "dicomwire":
        argv = [*tools.dicomwire, "serve", "--host", LOCALHOST, "--port", str(port)]
        argv += ["--max-pdu", str(pdu), "--storage", str(directory)]
        argv += ["--no-fsync"] if scenario.disk else ["--discard"]
        if pair.workers is not None:
            if not tools.serve_workers:
                raise Unsupported("dicomwire serve has no --workers yet")
            argv += ["--workers", str(pair.workers)]
        return argv
    if tool == "dcmtk":
        assert tools.storescp is not None
        argv = [tools.storescp, "-pdu", _dcmtk_pdu(pdu)]
        argv += ["-od", str(directory)] if scenario.disk else ["--ignore"]
        if scenario.layout == "parallel":
            argv.append("--fork")
        return [*argv, str(port)]
    if tool == "pynetdicom":
        argv = [*tools.script("pynetdicom_scp.py"), "--port", str(port), "--max-pdu", str(pdu)]
        return argv + (["--output", str(directory)] if scenario.disk else [])
    raise ValueError(tool)


def _chunks(files: list[Path], count: int) -> list[list[Path]]:
    return [files[i::count] for i in range(count)]


def sender_waves(
    tools: Tools, scenario: Scenario, pair: Pair, port: int, corpus: Path, files: list[Path]
) -> list[list[list[str]]]:
    """Processes to run: waves one after the other, the processes of a wave at once."""
    pdu = scenario.pdu_of(pair)
    target = [LOCALHOST, str(port)]
    tool = pair.sender
    if tool == "dicomwire":
        if scenario.layout == "each":
            script = tools.script("dicomwire_each.py")
            return [[[*script, "--aec", CALLED_AE, "--max-pdu", str(pdu), *target, str(corpus)]]]
        argv = [*tools.dicomwire, "store", "--aec", CALLED_AE, "--max-pdu", str(pdu)]
        argv += ["--no-progress", "--window", str(pair.window)]
        if scenario.layout == "parallel":
            argv += ["--associations", str(scenario.associations)]
        return [[[*argv, *target, str(corpus)]]]
    if tool == "dcmtk":
        assert tools.storescu is not None
        base = [tools.storescu, "-aec", CALLED_AE, "-pdu", _dcmtk_pdu(pdu)]
        if scenario.layout == "each":
            return [[[*base, *target, str(path)]] for path in files]
        if scenario.layout == "parallel":
            return [
                [
                    [*base, *target, *map(str, chunk)]
                    for chunk in _chunks(files, scenario.associations)
                ]
            ]
        return [[[*base, "+sd", "+r", *target, str(corpus)]]]
    if tool == "pynetdicom":
        argv = [*tools.script("pynetdicom_scu.py"), "--aec", CALLED_AE, "--max-pdu", str(pdu)]
        if scenario.layout == "each":
            argv.append("--each")
        if scenario.layout == "parallel":
            return [
                [
                    [*argv, *target, *map(str, chunk)]
                    for chunk in _chunks(files, scenario.associations)
                ]
            ]
        return [[[*argv, *target, str(corpus)]]]
    raise ValueError(tool)
