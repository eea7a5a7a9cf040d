"""kisflow's benchmark: the ``score-avg`` workload of shared/bench/WORKLOAD.md."""
