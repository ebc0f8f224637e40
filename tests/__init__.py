"""segbench tests (a regular package, so `tests.*` never resolves to another distribution's
top-level `tests` folder in site-packages, e.g. label-studio-converter's)."""
