"""``python -m otward`` runs the CLI."""

from otward.cli.app import main

main()
