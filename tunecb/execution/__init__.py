"""How trials are run: the contracts (:mod:`tunecb.execution._base`: an executor, the sink
the trial loop reports to), typed events (:mod:`tunecb.execution.events`), the
ask-run-tell loop every executor shares (:mod:`.loop`) and a worker's body around it
(:mod:`.worker`), the executors (in this process, worker processes on this machine, tasks
on a Dask cluster), which one runs a search (:mod:`.choice`) and how many trials at once
(:mod:`.sizing`)."""
