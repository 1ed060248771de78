"""The top of the house: the `q2c` command line, the process supervisor behind
`q2c console` (and the demo's `python -m demo`), and the scheduler's composition of jobs.
It may import every part below it; only the demo and the benchmarks, beside it, import it."""
