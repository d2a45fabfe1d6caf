"""`python -m swarmd` is the `swarmd` command."""

from swarmd.cli.app import main

main()
