"""Task experts (EXPERTS): each question routed to the model made for its task — rules first, then
optionally a small classifier model, else the default model (README, "Task experts")."""

from bot.experts.router import ExpertRouter, Route

__all__ = ["ExpertRouter", "Route"]
