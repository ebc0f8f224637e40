"""What a network costs: parameters, FLOPs, latency per runtime, and the real-time budget."""

from segbench.profiling.budget import check_budget
from segbench.profiling.flops import count_flops
from segbench.profiling.params import count_params

__all__ = ["check_budget", "count_flops", "count_params"]
