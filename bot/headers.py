"""The security headers of every page the bot serves to a browser (the answer pages, the console): no
referrer, no indexing, no sniffing, no framing, no cross-origin use; each page family brings its own
Content-Security-Policy."""

from __future__ import annotations


def security_headers(csp: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": csp,
        "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex, nofollow, noarchive",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }
