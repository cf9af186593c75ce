"""The operator console at /console/: server-rendered pages for the account's owner, in the same Flask
app and gunicorn processes as the webhook.

`auth` lets admins in (one-time links from the chat or `make console-link`, sessions in Redis) and
checks every request (session, CSRF, security headers); each section is a module with
`register(bp, runtime)` that adds its routes: `pages` (conversations, settings, audit log, undelivered
answers), `overview` (figures and charts), `library` (the knowledge base).
"""

from __future__ import annotations

from flask import Blueprint

from bot.config import Settings
from bot.console.auth import install
from bot.console.library import register as register_knowledge
from bot.console.overview import register as register_overview
from bot.console.pages import register as register_pages
from bot.runtime import Runtime


def console_blueprint(settings: Settings, runtime: Runtime) -> Blueprint:
    """The blueprint "console" under /console, with its own templates and static files."""
    bp = Blueprint(
        "console",
        __name__,
        url_prefix="/console",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    install(bp, settings, runtime)
    register_pages(bp, runtime)
    register_overview(bp, runtime)
    register_knowledge(bp, runtime)
    return bp
