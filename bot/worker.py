"""Entry module for the job workers: `dramatiq bot.worker --queues answers`.

Dramatiq's command line imports this module in each worker process; it builds the services from
the environment and registers the actor on the broker it then consumes from.
"""

from __future__ import annotations

import dramatiq

from bot.config import load_settings
from bot.jobs import Jobs
from bot.logs import configure_logging
from bot.services import Services

settings = load_settings()
configure_logging(settings)
jobs = Jobs(Services(settings))
dramatiq.set_broker(jobs.broker)
