"""Developer tools run from the project directory (`python -m tools.chat`)."""
