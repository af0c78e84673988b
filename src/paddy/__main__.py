"""`python -m paddy` runs the CLI."""

from paddy.cli.app import main

main()
