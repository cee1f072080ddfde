"""The `ci-orchestrator` command (and `python -m ci_orchestrator`).

`--version` alone is answered here, before click is imported: it starts many CI logs, and the
click command line (cli.py) costs more to import than the answer. Its text is click's
`version_option` text, so the two cannot be told apart; every other command line goes to click.
"""

import sys

VERSION_FLAGS = (["--version"], ["-V"])


def main() -> None:
    if sys.argv[1:] in VERSION_FLAGS:
        from ci_orchestrator.__about__ import __version__

        print(f"ci-orchestrator, version {__version__}")
        return
    from ci_orchestrator.cli import main as click_main

    click_main()


if __name__ == "__main__":
    main()
