"""Grid test plugins (load together with plugin_fixtures/): methods that are slow or kill their own
worker process, and a third-party executor registered on the same hook as the built-in ones."""

from __future__ import annotations

import os
import signal
import time

from harness import Method, Option, hookimpl
from harness.api import Executor


class Sleepy(Method):
    """Returns the input after sleeping `seconds` per sample (to kill a grid mid-way)."""

    name = "sleepy"
    tasks = frozenset({"deraining"})
    options = (Option("seconds", 0.0, "sleep per sample", float),)

    def predict(self, samples):
        time.sleep(self.config["seconds"] * len(samples))
        return [s["rainy"] for s in samples]


class Killer(Method):
    """SIGKILLs the process it runs in at its first prediction (a worker lost to the OOM killer)."""

    name = "killer"
    tasks = frozenset({"deraining"})

    def predict(self, samples):
        os.kill(os.getpid(), signal.SIGKILL)


class Serial(Executor):
    """Runs jobs one after another in the driver, in reverse order (a site's own scheduler)."""

    name = "serial-reversed"
    options = (Option("tag", "", "an option, to check executor options reach the plugin", str),)

    def map(self, function, jobs, workdir):
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "tag").write_text(self.config["tag"])
        for job in reversed(list(jobs)):
            yield None
            yield job, function(job)


@hookimpl
def harness_register_methods(register):
    register(Sleepy)
    register(Killer)


@hookimpl
def harness_register_executors(register):
    register(Serial)
