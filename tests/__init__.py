"""segbench's tests: a package, so `tests.*` never resolves to a `tests` package that a
dependency installed into site-packages (label-studio-converter ships one)."""
