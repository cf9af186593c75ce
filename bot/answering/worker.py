"""Entry module of the job workers: `python -m bot.answering.worker --queues answers --processes N
--threads M` (bot.answering.jobs.worker_command).

Run as a program, it is Dramatiq's command line with the project's logging set up first in its master
process: Dramatiq's own `logging.basicConfig` then adds nothing, and every line of the master and of
the worker processes it forks is one line in LOG_FORMAT. (The older `python -m dramatiq
bot.answering.worker …` still works, each event once too; only the master's few lines are then
Dramatiq's plain text.)

Dramatiq imports this module in each worker process; the import builds the runtime from the
environment, names the broker as a job worker's (its heartbeats count for /readyz, see
bot/store/workers.py) and registers the actors on the broker it then consumes from.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import dramatiq
from dramatiq import cli

from bot import heap
from bot.config import ConfigError, load_settings
from bot.logs import configure_logging

if TYPE_CHECKING:
    from bot.answering.jobs import Jobs

MODULE = "bot.answering.worker"


def boot() -> Jobs:
    """In a worker process: logging, the runtime, and the actors on the broker Dramatiq consumes from.

    The bot is imported here, not at the top: the master process (`main`) only starts and watches the
    worker processes, and without the bot's imports (the LLM SDK, the knowledge base…) it stays small."""
    from bot.answering.jobs import Jobs
    from bot.runtime import Runtime
    from bot.store.workers import new_job_worker_id

    settings = load_settings()
    configure_logging(settings)  # replaces the handler Dramatiq's basicConfig may have installed
    jobs = Jobs(Runtime(settings))
    jobs.broker.broker_id = new_job_worker_id()  # before the first command: Dramatiq reads it on each
    dramatiq.set_broker(jobs.broker)
    heap.settle()
    return jobs


def main(argv: list[str]) -> int:
    """The master process: Dramatiq's command line (`argv`: its options after the module name)."""
    try:
        configure_logging(load_settings())
    except ConfigError as exc:
        print(f"cannot start: {exc}", file=sys.stderr, flush=True)
        return 1
    args = cli.make_argument_parser().parse_args([MODULE, *argv])
    # Dramatiq restarts on SIGHUP by executing sys.argv[0] with sys.argv: make that this launcher
    sys.argv = [sys.executable, "-m", MODULE, *argv]
    return int(cli.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
elif __name__ != "__mp_main__":  # imported by Dramatiq in a worker process (not a spawn's copy of main)
    jobs = boot()
