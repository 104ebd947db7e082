"""What every benchmark of the project shares: timing calls and describing the machine.

    from hydranet.measure import interleaved_times, machine_info

The inference bench (:mod:`hydranet.inference.bench`), the training throughput bench
(:mod:`hydranet.training.throughput`) and the demo bench (:mod:`hydranet.tools.demo_bench`)
all time through :mod:`.timing` and record :func:`.machine.machine_info`, so their figures are
taken and labelled the same way, and print their tables through :func:`.table.aligned_rows`.
Nothing here imports the rest of the package.
"""

from .machine import loadavg, machine_info
from .table import aligned_rows
from .timing import interleaved_times, percentile, timed_call, timed_count

__all__ = ["aligned_rows", "interleaved_times", "loadavg", "machine_info", "percentile", "timed_count", "timed_call"]
