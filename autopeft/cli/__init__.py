"""The ``autopeft`` command line (console script ``autopeft.cli:run``; also ``python -m autopeft``).

The commands are plain functions in one module per group (``study``, ``verify``, ``assets``,
``dashboard``, ``workers``, ``interop``); this module alone builds the Typer app and registers them, so
the modules never import it back. They share only ``_common`` (options, storage URL, console)
and ``render`` (what they print). Every error a user can cause ends as one line on stderr
and exit code 2; Ctrl-C ends a search cleanly with exit code 130 after recording the
running trial.
"""

from __future__ import annotations

import sys

import typer

from autopeft.cli import assets, dashboard, interop, study, verify, workers
from autopeft.errors import AutoPeftError

__all__ = ["app", "main", "run"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Search PEFT configurations (method, rank, placement, budget) with multi-objective BO.",
)
for _command in (study.validate, study.search, study.studies, study.show, study.export, verify.verify, assets.assets,
                 dashboard.dashboard, workers.worker):
    app.command()(_command)

_db = typer.Typer(no_args_is_help=True, help=workers.DB_HELP)
_db.command("upgrade")(workers.db_upgrade)
_db.command("current")(workers.db_current)
_db.command("annotate")(interop.db_annotate)
app.add_typer(_db, name="db")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: one line and exit 2 for any user error.

    ``--debug`` anywhere on the command line (or ``AUTOPEFT_DEBUG=1``) prints the traceback
    and its causes above that line, for reporting a bug.
    """
    import os

    # typer >= 0.26 vendors its own click (typer._click); older ones use click itself.
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - depends on the typer version
        from click import ClickException

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("AUTOPEFT_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    try:
        result = app(args=argv, standalone_mode=False, prog_name="autopeft")
        return int(result or 0)
    except AutoPeftError as e:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"autopeft: error: {e}", file=sys.stderr)
        return 2
    except typer.Exit as e:
        return e.exit_code
    except ClickException as e:  # usage errors: unknown command, bad option value
        print(f"autopeft: error: {' '.join(e.format_message().split())}", file=sys.stderr)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        print("autopeft: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """The console script: ``main()`` as the process exit code."""
    sys.exit(main())
