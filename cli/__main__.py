"""`python -m cli`: the `q2c` command line, as child processes start it."""

from cli.main import main

main()
