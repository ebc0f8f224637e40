"""segbench's tests: a regular package, so `tests.*` is this folder even where a dependency
installs a top-level `tests` package into site-packages (label-studio-converter does)."""
