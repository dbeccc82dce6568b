"""The virtual printer as a node service (PS3.4 Annex H): the [print] table, its bindings.

The node accepts the Basic Grayscale (and, unless ``color = false``, the Basic Color)
Print Management Meta SOP Class. A request on such a context names the member class it
acts on (Film Session, Film Box, Image Box, Printer) as its Affected/Requested SOP Class,
and the DIMSE session looks handlers up by (that class, command): so the service's
handler table is keyed by the member classes, while its bindings (what the acceptance
policy is made from) name the meta classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from ...dimse.commands import CommandField
from ...dimse.session import DimseSession, Handler, SinkFactory
from ...dimse.status import (
    INVALID_ATTRIBUTE_VALUE,
    MISSING_ATTRIBUTE,
    NO_SUCH_ACTION_TYPE,
    NO_SUCH_SOP_INSTANCE,
    PROCESSING_FAILURE,
    SOP_CLASS_NOT_SUPPORTED,
    SUCCESS,
    UNRECOGNIZED_OPERATION,
)
from ...errors import ConfigError
from ...ul.negotiation import DEFAULT_TRANSFER_SYNTAXES
from ..service import Binding, HandlerKey, Service, StatusDeclaration, StatusTable
from .model import (
    BASIC_COLOR_PRINT_META,
    BASIC_GRAYSCALE_PRINT_META,
    FILM_SIZES,
    META_MEMBERS,
)
from .scp import (
    ATTRIBUTE_LIST_ERROR,
    ATTRIBUTE_OUT_OF_RANGE,
    CLASS_INSTANCE_CONFLICT,
    COLLATION_NOT_SUPPORTED,
    DENSITY_OUT_OF_RANGE,
    DUPLICATE_SOP_INSTANCE,
    FILM_BOX_EMPTY_PAGE,
    MISSING_ATTRIBUTE_VALUE,
    NO_FILM_BOXES,
    SESSION_EMPTY_PAGE,
    UNPRINTED_FILM_BOX,
    PrintConfig,
    PrintSCP,
)

#: Statuses every print N-operation can answer (PS3.7 C.5, PS3.4 H.4).
_COMMON = (
    StatusDeclaration(SUCCESS, "done"),
    StatusDeclaration(SOP_CLASS_NOT_SUPPORTED, "the SOP class is not in the context's meta class"),
    StatusDeclaration(UNRECOGNIZED_OPERATION, "the operation is not served for the SOP class"),
    StatusDeclaration(NO_SUCH_SOP_INSTANCE, "no such film session, film box or image box"),
)
#: Statuses of N-CREATE and N-SET on film sessions, film boxes and image boxes.
_ATTRIBUTES = (
    StatusDeclaration(ATTRIBUTE_LIST_ERROR, "unsupported attributes were ignored (warning)"),
    StatusDeclaration(ATTRIBUTE_OUT_OF_RANGE, "a value was replaced by the printer's (warning)"),
    StatusDeclaration(DENSITY_OUT_OF_RANGE, "min/max density outside the printer's (warning)"),
    StatusDeclaration(MISSING_ATTRIBUTE, "a required attribute is missing"),
    StatusDeclaration(MISSING_ATTRIBUTE_VALUE, "a required attribute is empty"),
    StatusDeclaration(INVALID_ATTRIBUTE_VALUE, "an attribute value is invalid"),
    StatusDeclaration(CLASS_INSTANCE_CONFLICT, "the image box is of the other colour class"),
)


__all__ = ["Print", "spool_directory", "validate_print_config"]


def validate_print_config(config: PrintConfig) -> PrintConfig:
    """The ``[print]`` values checked together: a ConfigError names the first bad one."""

    def check(condition: bool, key: str, message: str) -> None:
        if not condition:
            raise ConfigError(f"print.{key} {message}", key=f"print.{key}")

    check(
        0 <= config.min_density < config.max_density,
        "min_density",
        f"({config.min_density}) must be below max_density ({config.max_density})",
    )
    check(0 < config.pixels_per_inch <= 600, "pixels_per_inch", "must be from 0 to 600")
    check(config.max_copies >= 1, "max_copies", "must be at least 1")
    unknown = [size for size in config.film_sizes if size.upper() not in FILM_SIZES]
    check(not unknown, "film_sizes", f"has unknown sizes {unknown} (known: {list(FILM_SIZES)})")
    check(
        config.default_film_size.upper() in FILM_SIZES,
        "default_film_size",
        f"{config.default_film_size!r} is not one of {list(FILM_SIZES)}",
    )
    return config


def spool_directory(config: PrintConfig, storage_root: str | Path | None) -> Path | None:
    """Where the printer writes its films: ``[print] spool``, else ``<storage root>/print``
    (what ``dicomwire index rebuild`` leaves out: hardcopy images are not archive content)."""
    if config.spool is not None:
        return Path(config.spool)
    return Path(storage_root) / "print" if storage_root is not None else None


class Print(Service):
    """Print Management SCP: the virtual film printer (see :mod:`.scp`).

    ``storage_root`` places the spool at ``<storage_root>/print`` unless the ``[print]``
    table's ``spool`` says otherwise.
    """

    name = "print"
    section = "print"
    config_type = PrintConfig
    statuses: ClassVar[StatusTable] = {
        "N-GET": _COMMON,
        "N-CREATE": (
            *_COMMON,
            *_ATTRIBUTES,
            StatusDeclaration(DUPLICATE_SOP_INSTANCE, "a film session or film box exists"),
            StatusDeclaration(UNPRINTED_FILM_BOX, "an unprinted film box exists"),
            StatusDeclaration(PROCESSING_FAILURE, "a second film session on the association"),
        ),
        "N-SET": (*_COMMON, *_ATTRIBUTES),
        "N-ACTION": (
            *_COMMON,
            StatusDeclaration(NO_SUCH_ACTION_TYPE, "the action type is not 1 (print)"),
            StatusDeclaration(NO_FILM_BOXES, "the film session has no film box"),
            StatusDeclaration(COLLATION_NOT_SUPPORTED, "film boxes printed one by one (warning)"),
            StatusDeclaration(SESSION_EMPTY_PAGE, "the film session has no image (warning)"),
            StatusDeclaration(FILM_BOX_EMPTY_PAGE, "the film box has no image (warning)"),
            StatusDeclaration(PROCESSING_FAILURE, "the film cannot be written"),
        ),
        "N-DELETE": _COMMON,
    }

    def __init__(
        self, config: PrintConfig | None = None, *, storage_root: str | Path | None = None
    ) -> None:
        self.config = validate_print_config(config or PrintConfig())
        self.scp = PrintSCP(self.config, spool_directory(self.config, storage_root))

    def _handlers(self) -> dict[int, Handler]:
        scp = self.scp
        return {
            CommandField.N_GET_RQ: scp.handle_n_get,
            CommandField.N_CREATE_RQ: scp.handle_n_create,
            CommandField.N_SET_RQ: scp.handle_n_set,
            CommandField.N_ACTION_RQ: scp.handle_n_action,
            CommandField.N_DELETE_RQ: scp.handle_n_delete,
        }

    def meta_classes(self) -> list[str]:
        """The Meta SOP Classes served."""
        metas = [BASIC_GRAYSCALE_PRINT_META]
        if self.config.color:
            metas.append(BASIC_COLOR_PRINT_META)
        return metas

    def bindings(self) -> Sequence[Binding]:
        handlers = self._handlers()
        return [Binding(meta, DEFAULT_TRANSFER_SYNTAXES, handlers) for meta in self.meta_classes()]

    def handler_table(self) -> dict[HandlerKey, Handler]:
        """Handlers by (member SOP class, command): what the requests name."""
        handlers = self._handlers()
        table: dict[HandlerKey, Handler] = {}
        for meta in self.meta_classes():
            for member in META_MEMBERS[meta]:
                for command_field, handler in handlers.items():
                    table[(member, command_field)] = handler
        return table

    def sinks(self, session: DimseSession) -> Mapping[HandlerKey, SinkFactory]:
        # Called once per association by the node: the printer learns of the association
        # here, so status changes reach it before it sends anything.
        self.scp.attach(session)
        return {}

    async def set_printer_status(self, status: str, info: str = "") -> int:
        """Change the printer's status; N-EVENT-REPORT it on every print association."""
        return await self.scp.set_printer_status(status, info)  # type: ignore[arg-type]
