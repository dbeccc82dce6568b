"""Orthanc as a real peer: started by a test with its own JSON configuration, free ports,
a scratch directory, and its REST API driven over HTTP (see ../shared/PEERS.md).

``with orthanc(tmp_path, modalities={"DW": ("DICOMWIRE", "127.0.0.1", port)}) as peer:``
then ``peer.dicom_port``, ``peer.rest("POST", "/modalities/DW/echo", {})``. The process is
stopped when the block ends; its log is in ``tmp_path / "orthanc" / "orthanc.log"`` and is
attached to the error when it does not start.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import LOCALHOST, find_tool, get_free_tcp_port

WORKLISTS_PLUGIN = Path("/usr/share/orthanc/plugins/libModalityWorklists.so")


@dataclass
class OrthancPeer:
    """A running Orthanc: its ports, AE title, folder and a REST helper."""

    aet: str
    dicom_port: int
    http_port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def rest(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        """Call the REST API; the decoded JSON answer (text if not JSON).

        An HTTP error raises ``AssertionError`` with Orthanc's answer in the message.
        """
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://{LOCALHOST}:{self.http_port}{path}", data=data, method=method
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise AssertionError(f"Orthanc {method} {path}: HTTP {exc.code}: {detail}") from None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode(errors="replace")

    def upload(self, path: Path) -> str:
        """Store a Part 10 file through REST; Orthanc's instance id."""
        request = urllib.request.Request(
            f"http://{LOCALHOST}:{self.http_port}/instances", data=path.read_bytes(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return str(json.loads(response.read())["ID"])

    def log(self) -> str:
        log = self.directory / "orthanc.log"
        return log.read_text(errors="replace") if log.exists() else ""


@contextlib.contextmanager
def orthanc(
    tmp_path: Path,
    *,
    aet: str = "ORTHANC",
    modalities: Mapping[str, tuple[str, str, int] | Mapping[str, Any]] | None = None,
    worklists: Path | None = None,
    **options: Any,
) -> Iterator[OrthancPeer]:
    """Run Orthanc on free ports until the block ends (skip, or fail in CI, if missing).

    ``modalities`` is its ``DicomModalities`` (name -> [AE, host, port] or a full object);
    ``worklists`` a folder of ``.wl`` files served by the worklists plugin; ``options``
    any other configuration key (they override the defaults set here).
    """
    binary = find_tool("Orthanc", "apt-get install orthanc")
    directory = tmp_path / "orthanc"
    directory.mkdir(parents=True, exist_ok=True)
    dicom_port, http_port = get_free_tcp_port(), get_free_tcp_port()
    config: dict[str, Any] = {
        "Name": "dicomwire-test",
        "StorageDirectory": str(directory / "storage"),
        "IndexDirectory": str(directory / "index"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpServerEnabled": True,
        "DicomServerEnabled": True,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowMove": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomModalities": {
            name: list(entry) if isinstance(entry, tuple) else dict(entry)
            for name, entry in (modalities or {}).items()
        },
        "DicomScuTimeout": 30,
        "DicomAssociationCloseDelay": 0,
        "StableAge": 1,
        "Plugins": [],
    }
    if worklists is not None:
        config["Plugins"] = [str(WORKLISTS_PLUGIN)]
        config["Worklists"] = {"Enable": True, "Database": str(worklists)}
    config.update(options)
    config_path = directory / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = (directory / "orthanc.log").open("wb")
    process = subprocess.Popen(
        [binary, "--logfile=" + str(directory / "orthanc.log"), str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    peer = OrthancPeer(aet, dicom_port, http_port, directory, process)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({process.returncode}):\n{peer.log()[-3000:]}")
            with contextlib.suppress(OSError, AssertionError):
                peer.rest("GET", "/system", timeout=2)
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"Orthanc did not start in 30 s:\n{peer.log()[-3000:]}")
            time.sleep(0.1)
        yield peer
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
