"""Node configuration from TOML: :func:`dicomwire.services.node.load_config`.

Every table maps onto its dataclass (NodeConfig, [storage] StorageConfig, [timeouts]
Timeouts, [[known_nodes]] KnownNode); an unknown key anywhere is a :class:`ConfigError`
naming it, and so is a file that cannot be read or parsed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomwire.services.node import ConfigError, NodeConfig, load_config
from dicomwire.services.storage import DEFAULT_LAYOUT, StorageConfig
from dicomwire.ul.association import Timeouts
from dicomwire.ul.negotiation import KnownNode

FULL = """
ae_titles = ["NODE-A", "NODE-B"]
host = "127.0.0.1"
port = 11113
promiscuous = true
max_associations = 7
max_pdu_length = 32768
shutdown_grace = 2.5

[storage]
root = "/srv/dicom"
layout = "{CallingAETitle}/{SOPInstanceUID}.dcm"
fsync = false
duplicates = "reject"
discard = false
transfer_syntaxes = ["1.2.840.10008.1.2"]

[timeouts]
artim = 5
acse = 12.5
dimse = 0
network_idle = 30

[[known_nodes]]
ae_title = "MODALITY"
host = "10.0.0.0/8"
port = 104

[[known_nodes]]
ae_title = "WORKSTATION"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_every_table_is_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config.ae_titles == ["NODE-A", "NODE-B"]
    assert config.host == "127.0.0.1"
    assert config.port == 11113
    assert config.promiscuous is True
    assert config.max_associations == 7
    assert config.max_pdu_length == 32768
    assert config.shutdown_grace == 2.5
    storage = config.storage
    assert storage.root == Path("/srv/dicom")
    assert isinstance(storage.root, Path)
    assert storage.layout == "{CallingAETitle}/{SOPInstanceUID}.dcm"
    assert storage.fsync is False
    assert storage.duplicates == "reject"
    assert storage.discard is False
    assert list(storage.transfer_syntaxes) == ["1.2.840.10008.1.2"]
    # 0 disables a timeout; omitted ones keep their defaults
    assert config.timeouts == Timeouts(
        artim=5.0, acse=12.5, dimse=None, network_idle=30.0, connect=Timeouts().connect
    )
    assert config.known_nodes == [
        KnownNode("MODALITY", "10.0.0.0/8", 104),
        KnownNode("WORKSTATION"),
    ]


def test_empty_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    default = NodeConfig()
    assert config.ae_titles == default.ae_titles
    assert config.port == default.port
    assert config.storage.root == StorageConfig().root
    assert config.storage.layout == DEFAULT_LAYOUT
    assert config.storage.fsync is True
    assert config.storage.duplicates == "overwrite"
    assert config.timeouts.dimse is None  # the node waits for requests indefinitely
    assert config.known_nodes == []


def test_single_ae_title_string_becomes_a_list(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, 'ae_titles = "ONLY"\n')).ae_titles == ["ONLY"]


@pytest.mark.parametrize(
    ("text", "where", "key"),
    [
        ("colour = 'blue'\n", "node.toml", "colour"),
        ("[storage]\nrooot = 'x'\n", "[storage]", "rooot"),
        ("[timeouts]\nforever = 1\n", "[timeouts]", "forever"),
        ("[[known_nodes]]\nae_title = 'A'\naddress = '1.2.3.4'\n", "[[known_nodes]]", "address"),
    ],
    ids=["top-level", "storage", "timeouts", "known-nodes"],
)
def test_unknown_keys_are_named(tmp_path: Path, text: str, where: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    message = str(caught.value)
    assert "unknown setting" in message
    assert where in message
    assert key in message


def test_known_node_without_ae_title_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node\.toml"):
        load_config(write(tmp_path, "[[known_nodes]]\nhost = '127.0.0.1'\n"))


def test_timeout_that_is_not_a_number_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="soon"):
        load_config(write(tmp_path, "[timeouts]\nartim = 'soon'\n"))


def test_unparseable_and_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(write(tmp_path, "port = [1\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    "text",
    [
        "ae_titles = 5\n",
        "port = 'eleven'\n",
        "[storage]\nduplicates = 'bogus'\n",
        "[storage]\nfsync = 'no'\n",
    ],
    ids=["ae-titles-int", "port-string", "duplicates-bogus", "fsync-string"],
)
def test_values_of_the_wrong_type_are_config_errors(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, text))


def test_layout_with_an_unknown_field_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="PatientID"):
        load_config(write(tmp_path, "[storage]\nlayout = '{PatientID}/{SOPInstanceUID}.dcm'\n"))
