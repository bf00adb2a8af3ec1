"""How trials are run: one executor contract (:mod:`tunecb.execution._base`), typed events
(:mod:`tunecb.execution.events`), the ask-run-tell loop every executor shares, and the
executors: in this process, worker processes on this machine, tasks on a Dask cluster."""
