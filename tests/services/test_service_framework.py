"""Services compose the node (issue 12, items 4 and 5): bindings, derived policy and handler
table, TOML sections checked against their dataclasses, the AE directory.

A user-written service is exercised with a real peer (DCMTK findscu), not a mock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from pydicom import dcmread

from dicomwire.dimse.commands import CommandField
from dicomwire.dimse.session import Request
from dicomwire.errors import ConfigError
from dicomwire.services.directory import AEDirectory, RemoteAE, UnknownAEError
from dicomwire.services.node import Node, NodeConfig, load_config
from dicomwire.services.service import (
    ANY_SOP_CLASS,
    Binding,
    CustomService,
    Service,
    merge_bindings,
)
from dicomwire.services.storage import Storage, StorageConfig
from dicomwire.services.verification import Verification
from dicomwire.uids import VERIFICATION_SOP_CLASS

from ..conftest import LOCALHOST, find_dcmtk_tool, run_bounded

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def discard_config(**kwargs: object) -> NodeConfig:
    config = NodeConfig(host=LOCALHOST, port=0, **kwargs)  # type: ignore[arg-type]
    config.storage = StorageConfig(root=Path("/nonexistent-unused"), discard=True)
    config.shutdown_grace = 1.0
    return config


# --------------------------------------------------------------------------- derivation


def test_policy_and_handlers_are_derived_from_the_same_bindings() -> None:
    node = Node(discard_config())
    accepted = set(node.policy.abstract_syntaxes)
    handled = {key[0] for key in node.handlers if isinstance(key, tuple)}
    assert accepted == handled  # nothing accepted without a handler, and the reverse
    assert VERIFICATION_SOP_CLASS in accepted
    assert "1.2.840.10008.5.1.4.1.1.2" in accepted  # CT Image Storage
    assert STUDY_ROOT_FIND in accepted  # Query/Retrieve is a default service (issue 15)
    assert node.policy.accept_any_abstract_syntax is False


def test_promiscuous_storage_adds_a_catch_all_binding() -> None:
    node = Node(discard_config(promiscuous=True))
    assert node.policy.accept_any_abstract_syntax
    assert CommandField.C_STORE_RQ in node.handlers  # any SOP class's C-STORE
    assert tuple(node.policy.transfer_syntaxes) == tuple(node.config.storage.transfer_syntaxes)


def test_a_node_without_storage_accepts_only_what_its_services_bind() -> None:
    node = Node(discard_config(), services=[Verification()])
    assert set(node.policy.abstract_syntaxes) == {VERIFICATION_SOP_CLASS}
    with pytest.raises(KeyError):
        node.service("storage")


async def _answer(request: Request) -> int:
    return 0


def test_two_services_handling_the_same_command_is_a_config_error() -> None:
    first = CustomService({STUDY_ROOT_FIND: {CommandField.C_FIND_RQ: _answer}})
    second = CustomService({STUDY_ROOT_FIND: {CommandField.C_FIND_RQ: _answer}})
    with pytest.raises(ConfigError, match="both handle"):
        merge_bindings([first, second])


def test_services_may_share_a_sop_class_for_different_commands() -> None:
    finder = CustomService({STUDY_ROOT_FIND: {CommandField.C_FIND_RQ: _answer}})
    getter = CustomService({STUDY_ROOT_FIND: {CommandField.N_GET_RQ: _answer}})
    merged = merge_bindings([finder, getter])
    assert set(merged[STUDY_ROOT_FIND].handlers) == {CommandField.C_FIND_RQ, CommandField.N_GET_RQ}


def test_a_response_command_field_is_not_a_handler_key() -> None:
    with pytest.raises(ConfigError, match="not a DIMSE request"):
        CustomService({STUDY_ROOT_FIND: {CommandField.C_FIND_RSP: _answer}})


def test_role_selection_follows_the_bindings() -> None:
    class Reports(Service):
        name = "reports"

        def bindings(self) -> Sequence[Binding]:
            return [Binding("1.2.840.10008.1.20.1", requestor_may_be_scp=True)]

    node = Node(discard_config(), services=[Verification(), Reports()])
    assert list(node.policy.scp_role_for) == ["1.2.840.10008.1.20.1"]


def test_services_start_after_listening_and_stop_in_reverse_order() -> None:
    events: list[str] = []

    class Recorder(Service):
        def __init__(self, name: str) -> None:
            self.label = name

        def bindings(self) -> Sequence[Binding]:
            return []

        async def start(self, node: Node) -> None:
            events.append(f"start {self.label} listening={bool(node.server.sockets)}")

        async def stop(self) -> None:
            events.append(f"stop {self.label}")

    async def main() -> None:
        node = Node(discard_config(), services=[Verification(), Recorder("a"), Recorder("b")])
        async with node:
            pass

    run_bounded(main())
    assert events == [
        "start a listening=True",
        "start b listening=True",
        "stop b",
        "stop a",
    ]


# --------------------------------------------------------------------------- a user's SCP


def test_a_custom_find_service_answers_dcmtk_findscu(tmp_path: Path) -> None:
    """A C-FIND SCP in a few lines, queried by DCMTK: every match arrives."""
    findscu = find_dcmtk_tool("findscu")
    seen: list[str] = []

    async def on_find(request: Request) -> int:
        query = request.decode()
        assert query is not None
        seen.append(str(query.QueryRetrieveLevel))
        for number in (1, 2):
            match = query.copy()
            match.StudyInstanceUID = f"1.2.3.{number}"
            await request.send_pending(match)
        return 0

    async def main() -> bytes:
        service = CustomService({STUDY_ROOT_FIND: {CommandField.C_FIND_RQ: on_find}})
        async with Node(discard_config(), services=[Verification(), service]) as node:
            process = await asyncio.create_subprocess_exec(
                findscu,
                "-S",
                "-X",
                "-aec",
                "DICOMWIRE",
                LOCALHOST,
                str(node.port),
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                "PatientID=123",
                "-k",
                "StudyInstanceUID",
                cwd=tmp_path,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await process.communicate()
            assert process.returncode == 0, output.decode(errors="replace")
            return output

    run_bounded(main())
    assert seen == ["STUDY"]
    answers = sorted(tmp_path.glob("rsp*.dcm"))
    assert [str(dcmread(path).StudyInstanceUID) for path in answers] == ["1.2.3.1", "1.2.3.2"]
    assert all(str(dcmread(path).PatientID) == "123" for path in answers)


# --------------------------------------------------------------------------- configuration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[storage]\nfsync = 'no'\n", "[storage] fsync: expected true or false, got 'no'"),
        ("port = 'eleven'\n", "port: expected a whole number, got 'eleven'"),
        ("[timeouts]\nartim = 'soon'\n", "[timeouts] artim: expected a number, got 'soon'"),
        ("[storage]\nroot = 5\n", "[storage] root: expected text, got 5"),
        ("[[nodes]]\nae_title = 'PACS'\nport = 'x'\n", "[[nodes]] port"),
        ("[[nodes]]\nhost = '10.0.0.1'\n", "[[nodes]] needs ae_title"),
        ("[storage]\nduplicates = 'maybe'\n", "duplicates: expected one of"),
    ],
)
def test_config_errors_name_the_file_the_key_and_the_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_unknown_section_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[storrage]\nroot = 'x'\n"))
    assert "storrage" in str(caught.value)
    assert caught.value.key == "storrage"


# --------------------------------------------------------------------------- AE directory


DIRECTORY = """
[[nodes]]
ae_title = "PACS"
host = "127.0.0.1"
port = 11113
services = ["move-destination"]

[[nodes]]
ae_title = "RIS"
host = "10.0.0.0/8"
tls = true
"""


def test_nodes_are_read_into_the_directory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DIRECTORY))
    directory = AEDirectory(config.nodes)
    pacs = directory.resolve("PACS ", "move-destination")  # trailing spaces ignored
    assert (pacs.host, pacs.port, pacs.tls) == ("127.0.0.1", 11113, False)
    assert directory.get("RIS") == RemoteAE("RIS", "10.0.0.0/8", None, tls=True)
    assert [e.ae_title for e in directory.for_purpose("mpps-relay")] == ["RIS"]


def test_unknown_or_uncallable_destinations_are_a801(tmp_path: Path) -> None:
    directory = AEDirectory(load_config(write(tmp_path, DIRECTORY)).nodes)
    for title, purpose in (("NOBODY", None), ("RIS", None), ("PACS", "mpps-relay")):
        with pytest.raises(UnknownAEError) as caught:
            directory.resolve(title, purpose)
        assert caught.value.status == 0xA801 and caught.value.permanent


def test_an_ae_title_listed_twice_is_a_config_error(tmp_path: Path) -> None:
    text = '[[nodes]]\nae_title = "A"\n[[nodes]]\nae_title = "A "\n'
    with pytest.raises(ConfigError, match="listed twice"):
        load_config(write(tmp_path, text))


def test_restrict_callers_uses_the_directory() -> None:
    open_node = Node(discard_config(nodes=[RemoteAE("CT", "127.0.0.1", 104)]))
    assert open_node.policy.known_nodes == ()
    strict = Node(discard_config(nodes=[RemoteAE("CT", "127.0.0.1", 104)], restrict_callers=True))
    assert [n.ae_title for n in strict.policy.known_nodes] == ["CT"]
    assert strict.policy.known_nodes[0].matches("CT", "127.0.0.1")
    assert not strict.policy.known_nodes[0].matches("CT", "127.0.0.2")


def test_storage_is_one_service_among_others() -> None:
    node = Node(discard_config())
    assert [s.name for s in node.services] == ["verification", "storage", "query-retrieve"]
    storage = node.service("storage")
    assert isinstance(storage, Storage)
    assert ANY_SOP_CLASS not in {b.sop_class_uid for b in storage.bindings()}


def test_serve_flags_fill_the_directory() -> None:
    from dicomwire.services.cli import build_parser
    from dicomwire.services.cli.serve import node_config

    flags = ["--node", "PACS@127.0.0.1:104", "--node", "RIS@10.0.0.5:11112+tls"]
    args = build_parser().parse_args(["serve", *flags, "--restrict-callers"])
    config = node_config(args)
    assert config.nodes == [
        RemoteAE("PACS", "127.0.0.1", 104),
        RemoteAE("RIS", "10.0.0.5", 11112, tls=True),
    ]
    assert config.restrict_callers
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--node", "PACS@10.0.0.0/8"])
