"""Prefect flows: thin orchestration over the `colorization` library."""

import os

# Show the library's `logging` output in each flow run's logs (Prefect reads this setting
# when it is first imported, which the flow modules do right after this package).
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "colorization")
