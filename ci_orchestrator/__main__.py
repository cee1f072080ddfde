"""`python -m ci_orchestrator`."""

from ci_orchestrator.cli import main

main()
