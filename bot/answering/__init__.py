"""Writing answers in the background: Dramatiq jobs, one strategy per answer kind, paging, failures."""
