"""What lead-ray prints: its own lines by default (a summary per stage, progress for long steps); Ray's INFO
logs, Ray Data's progress dumps and Ray Train's start-up messages only with `--verbose` or LEAD_RAY_VERBOSE=1.

Progress goes to stderr: on a terminal one line rewritten in place, otherwise a line every
`PROGRESS_EVERY_S` seconds (and the last one), so a log file gets a handful of lines, not hundreds.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings

PROGRESS_EVERY_S = 15.0
UNIT_PROGRESS_EVERY_S = 30.0  # inside a unit: from a Ray actor, so a line per 30 s at most
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve")


def verbose() -> bool:
    return os.environ.get("LEAD_RAY_VERBOSE", "0") not in ("", "0", "false")


def set_verbose(on: bool) -> None:
    """Also seen by Ray workers started afterwards (runtime.WORKER_ENV reads it)."""
    os.environ["LEAD_RAY_VERBOSE"] = "1" if on else "0"


def worker_env() -> dict:
    """Environment of every Ray worker. Train's print patch is off always: with it every line a Train worker
    prints reached the console twice (the patched print logs it, and the logger prints it)."""
    env = {"LEAD_RAY_VERBOSE": "1" if verbose() else "0", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}
    if not verbose():  # Ray's and transformers' deprecation notices are for their developers, not for our users
        env["PYTHONWARNINGS"] = "ignore::DeprecationWarning,ignore::FutureWarning"
    return env


def train_logging() -> dict:
    """RunConfig arguments: Ray Train's start-up and per-report INFO lines only when verbose (Train's own
    LoggingConfig, which its RunConfig is typed for; Ray core's has other fields)."""
    import ray.train

    return {} if verbose() else {"logging_config": ray.train.LoggingConfig(log_level="WARNING")}


class _DropNotices(logging.Filter):
    """Ray notices printed on every run that ask nothing of the user."""

    NOTICES = ("Token authentication is enabled", "Progress bars disabled")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOTICES)


def drop_notices() -> None:
    """On the loggers that print them (a logger's filter sees only what is logged to it directly)."""
    if verbose():
        return
    for name in ("ray._private.authentication.authentication_token_setup", "ray.data._internal.progress"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices())


def quiet_train_worker() -> None:
    """In a Ray Train worker, before its loop: Train's and Data's INFO lines off ("Reporting training result",
    "Checkpoint successfully created", dataset execution notices); some of their loggers are named by file path,
    so every one already created under ray/train or ray/data is set to WARNING."""
    if verbose():
        return
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("ray.train", "ray.data")) or "/ray/train/" in name or "/ray/data/" in name:
            logging.getLogger(name).setLevel(logging.WARNING)
    import ray

    ray.data.DataContext.get_current().print_on_execution_start = False
    drop_notices()


def ray_init_kwargs() -> dict:
    """Logging arguments of ray.init: Ray's own INFO logs, in the driver and in every worker, only when verbose."""
    import ray

    drop_notices()
    if verbose():
        return {"logging_level": logging.INFO}
    return {"logging_level": logging.WARNING, "logging_config": ray.LoggingConfig(log_level="WARNING")}


def quiet_ray_libraries() -> None:
    """After ray.init, in the driver: Ray Data's progress bars and dumps, and the libraries' INFO lines, off."""
    import ray

    ctx = ray.data.DataContext.get_current()
    progress = os.environ.get("LEAD_RAY_PROGRESS", "1") != "0"
    if verbose():
        ctx.enable_progress_bars = progress
        return
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    drop_notices()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # "Writing model shards" bars in this process
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray")


class Progress:
    """`done/total` with rate and ETA, for the steps that take minutes (scoring units, rounds)."""

    def __init__(self, label: str, total: int, unit: str = ""):
        self.label, self.total, self.unit = label, total, unit
        self.done, self.t0, self.shown = 0, time.perf_counter(), 0.0
        self.tty = sys.stderr.isatty()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty or now - self.shown >= PROGRESS_EVERY_S or self.done >= self.total:
            self.shown = now
            self._show(now, note)

    def _show(self, now: float, note: str) -> None:
        elapsed = now - self.t0
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        text = f"[lead-ray] {self.label}: {self.done}/{self.total} {self.unit}".rstrip()
        text += f", {elapsed:.0f} s" + (f", ETA {eta:.0f} s" if self.done < self.total else "")
        text += f" {note}" if note else ""
        if self.tty:
            end = "\n" if self.done >= self.total else ""
            print(f"\r{text}\033[K", end=end, file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)


class UnitProgress:
    """Progress inside one long unit of work that makes several passes over its rows (scoring: the base model,
    the warm-up model twice, the embedder): rows done, tokens/s and the unit's ETA, a line at most every `every`
    seconds, so a 2,048-row unit on a CPU is never silent for more than that. The ETA weighs every pass alike."""

    def __init__(self, label: str, rows: int, passes: int, every: float = UNIT_PROGRESS_EVERY_S, clock=None):
        self.label, self.rows, self.passes, self.every = label, rows, passes, every
        self.clock = clock or time.perf_counter
        self.t0 = self.shown = self.clock()
        self.finished_passes, self.pass_rows, self.tokens, self.padded, self.lines = 0, 0, 0, 0, []

    def start_pass(self, name: str) -> None:
        if self.pass_rows:
            self.finished_passes += 1
        self.pass_name, self.pass_rows = name, 0

    def advance(self, rows: int, tokens: int = 0, padded: int | None = None) -> None:
        self.pass_rows += rows
        self.tokens += tokens
        self.padded += tokens if padded is None else padded
        now = self.clock()
        if now - self.shown >= self.every:
            self.shown = now
            self._show(now)

    def _show(self, now: float) -> None:
        elapsed = now - self.t0
        done = (self.finished_passes * self.rows + self.pass_rows) / (self.passes * self.rows)
        eta = elapsed / done * (1 - done) if done else float("nan")
        text = (
            f"[lead-ray] {self.label}: pass {self.finished_passes + 1}/{self.passes} ({self.pass_name}) "
            f"{self.pass_rows:,}/{self.rows:,} rows, {self.tokens / max(elapsed, 1e-9):,.0f} tokens/s, "
            f"{elapsed:.0f} s, unit ETA {eta:.0f} s"
        )
        self.lines.append(text)
        print(text, flush=True)
