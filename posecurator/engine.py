"""Where the parallel work runs: in this process (:class:`LocalEngine`) or on a Ray cluster
(:class:`RayEngine`).

An engine has one operation, ``map(fn, items, shared=None)``: ``fn(shared, item)`` for every item,
results yielded **in the order of the items** (whatever order the workers finish in), lazily: items
are taken from the iterable only as results are consumed, with at most ``max_in_flight`` tasks
submitted and not yet consumed, so memory stays bounded whatever the number of items. ``fn`` must
be a module-level function (workers import it by name) and must not depend on which process runs
it; the callers seed every task from the run seed and the task's index
(:func:`posecurator.augment.evolution.shard_rng`), so results are identical on every engine.

Ray is optional (``pip install 'posecurator[ray]'``). Without ``address`` :class:`RayEngine`
starts a private local cluster with ``num_workers`` CPUs, every address pinned to 127.0.0.1 and no
dashboard; with ``address`` ("HOST:PORT" of a cluster started by ``ray start --head``, or "auto")
it connects to that cluster. ``shared`` is put into Ray's object store once per ``map`` and passed
to every task by reference. Workers read the files the tasks name (a population file, a dataset)
themselves, so on a multi-node cluster those must be on a file system every node mounts.

Nothing here imports the rest of posecurator (it ranks with ``errors`` and ``fileio``): the
layers pass their own module-level functions in.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Callable, Iterable, Iterator

from posecurator.errors import PoseCuratorError

ENGINES = ("local", "ray")


class LocalEngine:
    """Every task in this process, one after the other (the reference every engine must equal)."""

    name = "local"
    parallel = False

    def __init__(self):
        self.num_workers = 1

    def map(self, fn: Callable, items: Iterable, *, shared=None) -> Iterator:
        for item in items:
            yield fn(shared, item)

    def close(self) -> None:
        pass

    def describe(self) -> dict:
        return {"engine": "local", "workers": 1}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class RayEngine:
    """Tasks as Ray tasks (one CPU each) on a local private cluster or the cluster at ``address``.

    ``num_workers``: tasks running at once (default: the cluster's CPUs; a local cluster is
    started with that many CPUs, default ``os.cpu_count()``). ``max_in_flight``: tasks submitted
    and not yet consumed (default ``num_workers + 1``: every worker busy and one queued, so a
    worker never waits for the driver, and at most that many results are held at once).
    """

    name = "ray"
    parallel = True

    def __init__(self, address: str | None = None, num_workers: int | None = None, *, max_in_flight: int | None = None,
                 init_options: dict | None = None):
        try:
            import ray
        except ImportError:
            raise PoseCuratorError("--engine ray needs Ray: pip install 'posecurator[ray]' (or pip install 'ray>=2.9')") from None
        if num_workers is not None and int(num_workers) < 1:
            raise PoseCuratorError(f"--workers must be >= 1, got {num_workers}")
        self._ray = ray
        self._owns = False
        self.address = address
        if not ray.is_initialized():
            options = {"include_dashboard": False, "log_to_driver": False}
            if address:
                # workers on the cluster's nodes import posecurator themselves: it must be installed there
                options.update(address=address)
            else:
                # a private local cluster on loopback only (the default binds the machine's network
                # interface), sized to the workers asked for; its workers inherit this process's
                # environment, so they import the same posecurator
                options.update(num_cpus=int(num_workers or os.cpu_count() or 1), _node_ip_address="127.0.0.1")
            options.update(init_options or {})
            try:
                ray.init(**options)
            except (ConnectionError, RuntimeError, ValueError) as e:
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise PoseCuratorError(f"cannot start or reach {where}: {str(e).splitlines()[0] if str(e) else e}") from None
            self._owns = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.num_workers = int(num_workers) if num_workers else max(1, cpus)
        self.max_in_flight = int(max_in_flight) if max_in_flight else self.num_workers + 1
        self._remote: dict = {}

    def _remote_of(self, fn: Callable):
        key = (fn.__module__, fn.__qualname__)
        if key not in self._remote:
            self._remote[key] = self._ray.remote(num_cpus=1, max_retries=0)(fn)
        return self._remote[key]

    def map(self, fn: Callable, items: Iterable, *, shared=None) -> Iterator:
        ray = self._ray
        remote = self._remote_of(fn)
        shared_ref = ray.put(shared)
        pending: deque = deque()
        try:
            for item in items:
                if len(pending) >= self.max_in_flight:
                    yield ray.get(pending.popleft())  # in order: the oldest task first
                pending.append(remote.remote(shared_ref, item))
            while pending:
                yield ray.get(pending.popleft())
        finally:
            for ref in pending:  # abandoned (the consumer stopped or failed): stop the rest
                ray.cancel(ref, force=True)
            del shared_ref

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def describe(self) -> dict:
        return {"engine": "ray", "workers": self.num_workers, "address": self.address or "local (127.0.0.1)"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def make_engine(name: str = "local", *, address: str | None = None, workers: int | None = None):
    """The engine ``--engine NAME [--address ADDR] [--workers N]`` asks for."""
    if name == "local":
        if address:
            raise PoseCuratorError("--address goes with --engine ray")
        if workers not in (None, 1):
            raise PoseCuratorError("--workers N > 1 needs a parallel engine (--engine ray)")
        return LocalEngine()
    if name == "ray":
        return RayEngine(address=address, num_workers=workers)
    raise PoseCuratorError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
