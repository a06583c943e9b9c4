"""Benchmarks for secure-cp: ``python -m bench`` (``--quick`` for a short run, ``--help`` for the knobs).

What is measured, all in one run on this machine, against the same local CSMS (DESIGN.md: benchmarks print
ratios against a baseline measured in the same run; tests never assert on wall-clock time):

* CPU per round trip of the station process, for (a) a raw ``websockets`` + ``json`` client (the floor), (b) the
  ``ocpp`` package's ChargePoint, (c) secure-cp in a transaction (engine, adapter, persistent outbox, schema
  validation, transport), and the ratios (c)/(a), (c)/(b): on OCPP 1.6 with MeterValues, and on OCPP 2.0.1 with
  TransactionEvent Updated (10 sampled values each);
* cold start of ``secure-cp run`` to its BootNotification on the wire, resident memory idle and with 10,000
  queued offline messages, idle CPU and wake-ups, GetConfiguration latency (1.6), and the time a 2.0.1 station
  takes to answer a GetBaseReport FullInventory and send the whole NotifyReport (issue #3).

Modules, one job each:

* :mod:`bench.common`      the shared MeterValues payload, the 10-measurand simulated meter, /proc readers
* :mod:`bench.csms_proc`   the CSMS (``secure_cp.sim.csms.Csms``) in a process of its own
* :mod:`bench.clients`     the three round-trip clients (1.6 or 2.0.1), each run in a subprocess of its own
* :mod:`bench.process`     cold start, RSS, idle CPU and offline queue of a ``secure-cp run`` process
* :mod:`bench.getconf`     GetConfiguration latency, in-process
* :mod:`bench.basereport`  GetBaseReport FullInventory latency (2.0.1), against the strict and a minimal CSMS
* :mod:`bench.breakdown`   CPU per step of one secure-cp round trip, each step timed alone (``--profile``)
* :mod:`bench.report`      targets, the table and the JSON document
"""
