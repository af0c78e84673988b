"""`python -m paddy` runs the CLI."""

from paddy.cli import main

main()
