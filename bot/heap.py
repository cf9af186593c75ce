"""The garbage collector in a long-running process: what the process is built from, it never walks again.

CPython's full collection (generation 2) walks every container object the process holds. A web or job
process holds 70–85 thousand of them once built (modules, settings, the runtime), more once its heavy
libraries are loaded (bot/lazy.py), and a full walk of them took 27–42 ms on the 2-core benchmark
machine: a pause of every thread of the process, each time the collector decides on one under load —
in a burst of answers, the delay of every reply the process holds. `settle()` collects once, then moves
everything alive into the permanent generation (`gc.freeze`): later full collections walk only what the
process allocated since. What was garbage is collected first; what is frozen was alive, and nearly all of
it stays so (modules, the runtime, the libraries' tables). The exception: a lazy module first loaded
while requests are in flight (bot/lazy.py: a dozen of them, a few per library) freezes their objects
too, and those that end up in reference cycles stay allocated — a few kilobytes, at most once per lazy
module and process.
"""

from __future__ import annotations

import gc


def settle() -> None:
    """Collect, then exempt everything still alive from future collections (see the module's doc)."""
    gc.collect()
    gc.freeze()
