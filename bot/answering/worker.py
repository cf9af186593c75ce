"""Entry module for the job workers: `dramatiq bot.answering.worker --queues answers`.

Dramatiq's command line imports this module in each worker process; it builds the runtime from
the environment and registers the actor on the broker it then consumes from.
"""

from __future__ import annotations

import dramatiq

from bot.answering.jobs import Jobs
from bot.config import load_settings
from bot.logs import configure_logging
from bot.runtime import Runtime

settings = load_settings()
configure_logging(settings)
jobs = Jobs(Runtime(settings))
dramatiq.set_broker(jobs.broker)
