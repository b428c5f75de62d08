"""A progress bar for bulk runs on the terminal (stderr): count, rate, ETA and failures."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from colorization.bulk import Plan
from colorization.inference import Outcome


class BulkProgress:
    """Callbacks for `colorize_bucket(on_plan=..., on_outcome=...)` drawing one bar."""

    def __init__(self) -> None:
        self._progress = Progress(
            TextColumn("colorizing"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.1f} img/s"), TextColumn("failed {task.fields[failed]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False)
        self._task: TaskID | None = None
        self._failed = 0

    def __enter__(self) -> BulkProgress:
        return self  # the bar appears once the plan is known (nothing on a planning error)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._progress.stop()

    def start(self, plan: Plan) -> None:
        self._progress.start()
        self._task = self._progress.add_task("bulk", total=len(plan.todo), rate=0.0, failed=0)

    def advance(self, outcome: Outcome) -> None:
        if self._task is None:
            return
        self._failed += outcome.error is not None
        task = self._progress.tasks[self._task]
        elapsed = task.elapsed or 0.0
        rate = (task.completed + 1) / elapsed if elapsed > 0 else 0.0
        self._progress.update(self._task, advance=1, rate=rate, failed=self._failed)
