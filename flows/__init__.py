"""Prefect flows: thin orchestration over the `colorization` library."""
