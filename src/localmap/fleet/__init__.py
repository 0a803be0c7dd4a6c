"""A fleet of captures: many bundles evaluated as Dask tasks, results kept as Parquet.

Models nothing of the kernel itself. Each bundle is one task that runs the allocator replay
and, from that one replay, the design machine for every configuration asked
(:func:`localmap.analysis.overhead.replay_overhead`); the tasks run on a local Dask cluster
(processes on this machine) or on an existing Dask distributed scheduler. Parts:

* :mod:`.sources` -- SOURCE arguments (a folder of bundles, a glob, a CSV/JSON manifest of
  paths or URLs) expanded into bundle locations through fsspec;
* :mod:`.task` -- the configurations and the work of one bundle, run on a worker; a bundle's
  failure is its rows' one-line error, never the fleet's;
* :mod:`.store` -- the results folder: Parquet files (pyarrow) appended as bundles finish, so an
  interrupted run resumes where it stopped;
* :mod:`.run` -- the driver: which bundles are left, the cluster, collecting and writing;
* :mod:`.aggregate` -- percentiles, outliers and the reasons for them, failures by reason.

Returns plain data; draws nothing (``localmap fleet`` and :mod:`localmap.report.fleet` do).
"""
