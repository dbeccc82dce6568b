"""The AE directory: the remote application entities a node knows (PS3.8 §7.1 AE titles).

Every service that opens an association back or onward finds its peer here, by AE title:
C-MOVE destinations (PS3.4 C.4.2), storage commitment reports on a new association
(PS3.4 J.3.3), the MPPS relay. In the node's TOML it is a list of ``[[nodes]]`` tables::

    [[nodes]]
    ae_title = "CT_SCANNER"
    host = "10.1.2.3"
    port = 104
    tls = false
    services = ["move-destination", "storage-commitment"]   # empty: every purpose

An entry is also a :class:`~dicomwire.ul.negotiation.KnownNode`, so the same list can
restrict who may associate (``restrict_callers``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import ConfigError, UnknownAEError
from ..ul.identifiers import normalize_ae_title, validate_ae_title
from ..ul.negotiation import KnownNode

__all__ = ["AEDirectory", "RemoteAE", "UnknownAEError"]


@dataclass(slots=True)
class RemoteAE(KnownNode):
    """A remote AE: where it listens, whether over TLS, and what it is for.

    ``services`` names the purposes it serves (``"move-destination"``,
    ``"storage-commitment"``, ``"mpps-relay"``...); empty means every purpose.
    """

    tls: bool = False
    services: tuple[str, ...] = ()

    def serves(self, purpose: str) -> bool:
        return not self.services or purpose in self.services

    @property
    def callable(self) -> bool:
        """True when the entry says where to call it: a single host and a port."""
        return self.port is not None and self.host is not None and "/" not in self.host


class AEDirectory:
    """Remote AEs by AE title (titles compared as PS3.8 does: trailing spaces ignored)."""

    def __init__(self, entries: Iterable[RemoteAE] = ()) -> None:
        self._entries: dict[str, RemoteAE] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: RemoteAE) -> None:
        """Add an entry; an AE title listed twice is a ConfigError naming it."""
        title = normalize_ae_title(validate_ae_title(entry.ae_title))
        if title in self._entries:
            raise ConfigError(f"[[nodes]]: AE title {title!r} is listed twice", key="ae_title")
        if entry.port is not None and not 1 <= entry.port <= 65535:
            raise ConfigError(
                f"[[nodes]] {title}: port must be from 1 to 65535, not {entry.port!r}", key="port"
            )
        self._entries[title] = entry

    def __iter__(self) -> Iterator[RemoteAE]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ae_title: str) -> RemoteAE | None:
        """The entry for ``ae_title``, or None."""
        return self._entries.get(normalize_ae_title(ae_title))

    def for_purpose(self, purpose: str) -> list[RemoteAE]:
        """Every entry serving ``purpose`` (e.g. the MPPS relay's destinations)."""
        return [entry for entry in self._entries.values() if entry.serves(purpose)]

    def resolve(self, ae_title: str, purpose: str | None = None) -> RemoteAE:
        """The callable entry for ``ae_title`` (for ``purpose``); UnknownAEError otherwise."""
        entry = self.get(ae_title)
        if entry is None:
            raise UnknownAEError(f"AE title {ae_title.strip()!r} is not in the AE directory")
        if purpose is not None and not entry.serves(purpose):
            raise UnknownAEError(f"{entry.ae_title} is not configured for {purpose}")
        if not entry.callable:
            raise UnknownAEError(
                f"{entry.ae_title} has no host and port to call in the AE directory"
            )
        return entry
