"""The one place that turns exceptions into exit codes and messages.

A user's mistake is one line on stderr and its documented exit code; Ctrl-C is 130; anything else
is our bug: exit 3, with the traceback written to a log file whose path is printed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from ci_orchestrator.__about__ import __version__
from ci_orchestrator.errors import CIOrchestratorError, ExitCode
from ci_orchestrator.state import STATE_DIR


def crash_log_path() -> Path:
    import tempfile

    if STATE_DIR.is_dir() or Path(".git").exists():
        return STATE_DIR / "crash.log"
    return Path(tempfile.gettempdir()) / "ci-orchestrator-crash.log"


def _write_crash_log(exc: BaseException) -> Path:
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    header = f"ci-orchestrator {__version__}, Python {sys.version.split()[0]}\n"
    header += f"command: {' '.join(sys.argv)}\n\n"
    for path in (crash_log_path(), Path(tempfile.gettempdir()) / "ci-orchestrator-crash.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(header + text)
            return path
        except OSError:
            continue
    return Path("(could not be written)")


@contextlib.contextmanager
def error_handler() -> Iterator[None]:
    """Map what escapes a command to `click.exceptions.Exit` with the right code."""
    try:
        yield
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except CIOrchestratorError as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        raise click.exceptions.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        raise click.exceptions.Exit(ExitCode.INTERRUPTED) from None
    except BrokenPipeError:
        raise click.exceptions.Exit(ExitCode.OK) from None
    except Exception as exc:
        path = _write_crash_log(exc)
        click.echo(
            f"error: an unexpected {type(exc).__name__}: {exc}\n"
            f"This is a bug in ci-orchestrator; the traceback is in {path}. Please report it.",
            err=True,
        )
        raise click.exceptions.Exit(ExitCode.BUG) from None
