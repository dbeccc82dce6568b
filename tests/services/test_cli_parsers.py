"""``dicomwire`` builds only the parser of the subcommand it runs (start-up, issue 18).

What the user sees must not depend on it: ``dicomwire --help`` lists every subcommand with
its one-line help, and each ``dicomwire COMMAND --help`` is the text the full parser gives.
In-process through :func:`~dicomwire.services.cli.main`, compared with
:func:`~dicomwire.services.cli.build_parser`'s parser of every subcommand.
"""

from __future__ import annotations

import argparse

import pytest

from dicomwire.services.cli import build_parser, main


def full_subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("dicomwire has no subcommands")


def help_of(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """``dicomwire ARGS`` in-process, expected to print help and exit 0; its stdout."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    shown = help_of(capsys, "--help")
    assert shown == build_parser().format_help()
    names = full_subcommands()
    assert {"echo", "store", "serve", "find", "probe", "cluster"} <= set(names)
    for name in names:
        assert f"    {name}" in shown


@pytest.mark.parametrize("name", sorted(full_subcommands()))
def test_each_subcommand_help_is_unchanged(capsys: pytest.CaptureFixture[str], name: str) -> None:
    assert help_of(capsys, name, "--help") == full_subcommands()[name].format_help()


def test_unknown_subcommand_lists_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ecko"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'ecko'" in err
    assert all(repr(name) in err for name in full_subcommands())
