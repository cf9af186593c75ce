"""Operator tools (make run, make check, admin codes, the embedded Redis, the local model).

Never imported by the web tier or the job workers."""
