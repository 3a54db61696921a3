"""Each pool's history kept across restarts (`--storage.path DIR`), so that the first scrape
after a restart costs about one call a pool instead of a full read of every pool.

One JSON file a pool, written whole and atomically (a temporary file, fsync, rename, fsync of
the folder) after each collection that changed what the history knows, and read when the pool
is first collected. A file that is corrupt, cut short, of another format, or of another pool,
region, endpoint or account is ignored with one log line: the pool is read in full as without
storage. What is read back is checked like an answer of the service (`parse_job`), and the
first scan checks it against the list as every scan does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError

from exporter.cognito.jobs import MAX_USER_COUNT, InvalidJobsPage, Job, parse_job
from exporter.collect.history import OUTCOMES, HistoryState, PoolHistory, Totals
from exporter.config.files import FileProblem, read_regular_file
from exporter.config.model import Pool
from exporter.config.problems import describe_validation_errors
from exporter.redaction import safe_error_text

log = logging.getLogger(__name__)

FORMAT = 1
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_STORED_JOBS = 20_000
MAX_COUNT = 2**63
TEMPORARY_SUFFIX = ".tmp"
# a write lasts milliseconds: a temporary file this old belongs to no live writer (another
# exporter sharing the folder included), only to a process killed while writing
LEFTOVER_AGE_SECONDS = 60.0
LAST_SCAN_SECONDS = 60.0


class StorageError(Exception):
    """The storage folder cannot be used."""


class HistoryStore:
    """The files of one storage folder. `owner(pool)` names what a file must belong to
    beyond the pool itself (the account its credentials reach; None while that cannot be
    told, and then a file of any account is taken, and keeps its account when written)."""

    def __init__(self, folder: Path, owner: Callable[[Pool], str | None]) -> None:
        self._folder = folder
        self._owner = owner
        self._lock = threading.Lock()
        # what was last written of each pool: the document but its last scan, and that scan
        self._written: dict[str, tuple[bytes, float | None]] = {}
        self._failing: set[str] = set()
        # pool id -> the account its file was written for, kept while the account is not resolved
        self._accounts: dict[str, str] = {}

    @classmethod
    def open(cls, path: str, owner: Callable[[Pool], str | None]) -> HistoryStore:
        """The folder at `path`, made (mode 700) if missing; StorageError in one line when it
        is not a folder the exporter can write."""
        folder = Path(path)
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # a name of its own, created exclusively: a planted link is never written through
            descriptor, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
            os.close(descriptor)
            os.unlink(probe)
        except OSError as error:
            raise StorageError(
                f"--storage.path {path}: cannot write there ({error.strerror or error})"
            ) from None
        if folder.stat().st_mode & stat.S_IWOTH:
            log.warning(
                "the storage folder is writable by other users, who can fill it or spoil "
                "stored histories (they are then ignored); give it a folder of its own",
                extra={"fields": {"folder": str(folder)}},
            )
        _remove_leftovers(folder)
        return cls(folder, owner)

    def load(
        self,
        pool: Pool,
        history: PoolHistory,
        now: float,
        wall_now: float,
        restore_reasons: Callable[[object], None] | None = None,
    ) -> bool:
        """Restore `pool`'s history from its file, if there is a sound one of this pool.
        The history keeps time by `now`'s clock (monotonic); the file by the wall clock."""
        path = self._path(pool)
        try:
            data = read_regular_file(str(path), MAX_FILE_BYTES)
        except FileProblem as problem:
            if path.exists() or path.is_symlink():
                self._ignored(pool, str(problem))
            return False
        try:
            document = orjson.loads(data)
            state = self._state_from(document, pool)
            if restore_reasons is not None and document.get("reasons") is not None:
                restore_reasons(document["reasons"])
        except (orjson.JSONDecodeError, ValueError) as error:
            self._ignored(pool, safe_error_text(error))
            return False
        history.restore(_shifted(state, now - wall_now), now)
        with self._lock:
            self._written[pool.id] = (
                orjson.dumps({**document, "last_scan": None}),
                state.last_scan,
            )
        log.debug("pool history restored", extra={"fields": {"user_pool_id": pool.id}})
        return True

    def save(
        self,
        pool: Pool,
        history: PoolHistory,
        now: float,
        wall_now: float,
        reasons: Mapping[str, Any] | None = None,
    ) -> None:
        """Write `pool`'s history, with its jobs' reasons (JSON values), if it changed since it
        was last written. Failures are logged once while any pool's writes fail, and change
        nothing else."""
        state = _shifted(history.state(), wall_now - now, whole_seconds=True)
        data = orjson.dumps(self._document(pool, state, reasons))
        unscanned = orjson.dumps(self._document(pool, replace(state, last_scan=None), reasons))
        with self._lock:
            if _same(self._written.get(pool.id), unscanned, state.last_scan):
                return
        path = self._path(pool)
        temporary = path.with_name(
            f".{path.name}.{os.getpid()}.{threading.get_ident()}{TEMPORARY_SUFFIX}"
        )
        try:
            # one left by a process that died with this pid (pid 1 in every container) goes;
            # then a new file of our own, never through a link someone put there
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            descriptor = os.open(
                temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600
            )
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
            self._sync_folder()
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink()
            self._write_failed(pool, error)
            return
        with self._lock:
            self._written[pool.id] = (unscanned, state.last_scan)
            recovered = pool.id in self._failing and len(self._failing) == 1
            self._failing.discard(pool.id)
        if recovered:
            log.info(
                "pool histories are written again", extra={"fields": {"folder": str(self._folder)}}
            )

    def remove(self, pool: Pool) -> None:
        """Forget `pool`, which is no longer collected: its file and what is known of it."""
        with self._lock:
            self._written.pop(pool.id, None)
            self._accounts.pop(pool.id, None)
            self._failing.discard(pool.id)
        try:
            self._path(pool).unlink(missing_ok=True)
        except OSError as error:
            log.warning(
                "cannot remove the stored history of a pool no longer collected",
                extra={
                    "fields": {
                        "user_pool_id": pool.id,
                        "error": error.strerror or type(error).__name__,
                    }
                },
            )

    def _path(self, pool: Pool) -> Path:
        # pool ids are ASCII letters, digits, '-' and one '_': safe as file names
        return self._folder / f"{pool.id}.json"

    def _sync_folder(self) -> None:
        descriptor = os.open(self._folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def _identity(self, pool: Pool) -> dict[str, str | None]:
        account = self._owner(pool)
        if account is None:
            with self._lock:
                account = self._accounts.get(pool.id)
        return {
            "user_pool_id": pool.id,
            "region": pool.region,
            "endpoint_url": pool.endpoint_url,
            "account": account,
        }

    def _document(
        self, pool: Pool, state: HistoryState, reasons: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        return {
            **({} if reasons is None else {"reasons": reasons}),
            "format": FORMAT,
            "pool": self._identity(pool),
            "head": [_record(job) for job in state.head],
            "tail_statuses": dict(state.tail.statuses),
            "tail_users": {outcome: state.tail.users[outcome] for outcome in OUTCOMES},
            "tail_recent": [_record(job) for job in state.tail_recent],
            "boundary": None if state.boundary is None else _record(state.boundary),
            "ordered": state.ordered,
            "next_full_scan": state.next_full_scan,
            "last_full_scan": state.last_full_scan,
            "last_scan": state.last_scan,
            "users_total": {outcome: state.users_total[outcome] for outcome in OUTCOMES},
        }

    def _state_from(self, document: object, pool: Pool) -> HistoryState:
        if not isinstance(document, dict):
            raise ValueError("not a stored pool history")
        if document.get("format") != FORMAT:
            raise ValueError("written in another format")
        stored = document.get("pool")
        expected = self._identity(pool)
        if not isinstance(stored, dict):
            raise ValueError("written for another pool, region, endpoint or account")
        account = stored.get("account")
        same_place = {**stored, "account": None} == {**expected, "account": None}
        # an account not resolved now (STS did not answer) cannot tell a file of another apart
        same_account = None in (account, expected["account"]) or account == expected["account"]
        if not (same_place and same_account):
            raise ValueError("written for another pool, region, endpoint or account")
        try:
            stored = _StoredHistory.model_validate(document)
        except ValidationError as error:
            raise ValueError(f"{describe_validation_errors(error)[0]}") from None
        state = HistoryState(
            head=tuple(stored.head),
            tail=Totals(Counter(stored.tail_statuses), Counter(stored.tail_users)),
            tail_recent=tuple(stored.tail_recent),
            boundary=stored.boundary,
            ordered=stored.ordered,
            next_full_scan=stored.next_full_scan,
            last_full_scan=stored.last_full_scan,
            users_total=Counter(stored.users_total),
            last_scan=stored.last_scan,
        )
        _check_sound(state)
        if isinstance(account, str):
            with self._lock:
                self._accounts[pool.id] = account
        return state

    def _ignored(self, pool: Pool, reason: str) -> None:
        log.warning(
            "stored pool history ignored; the pool is read in full",
            extra={"fields": {"user_pool_id": pool.id, "reason": reason}},
        )

    def _write_failed(self, pool: Pool, error: OSError) -> None:
        with self._lock:
            first = not self._failing
            self._failing.add(pool.id)
        if first:
            log.warning(
                "cannot write pool histories; a restart will read pools in full",
                extra={
                    "fields": {
                        "folder": str(self._folder),
                        "user_pool_id": pool.id,
                        "error": error.strerror or type(error).__name__,
                    }
                },
            )


def _same(written: tuple[bytes, float | None] | None, unscanned: bytes, scan: float | None) -> bool:
    """Whether a history needs no writing: nothing changed but when it was last read, and
    that by less than LAST_SCAN_SECONDS (a restart resumes the schedule to within that)."""
    if written is None or written[0] != unscanned:
        return False
    last = written[1]
    return scan == last or (
        scan is not None and last is not None and scan - last < LAST_SCAN_SECONDS
    )


def _shifted(state: HistoryState, offset: float, *, whole_seconds: bool = False) -> HistoryState:
    """`state` with its times moved to another clock. Stored in whole seconds, so the file of
    an unchanged history stays byte for byte the same while the two clocks drift apart."""

    def moved(when: float) -> float:
        return float(round(when + offset)) if whole_seconds else when + offset

    return replace(
        state,
        next_full_scan=moved(state.next_full_scan) if state.next_full_scan else 0.0,
        last_full_scan=None if state.last_full_scan is None else moved(state.last_full_scan),
        last_scan=None if state.last_scan is None else moved(state.last_scan),
    )


def _remove_leftovers(folder: Path) -> None:
    """Temporary files of processes killed while writing, which no one else removes."""
    cutoff = time.time() - LEFTOVER_AGE_SECONDS
    removed = 0
    for entry in os.scandir(folder):
        if not (entry.name.startswith(".") and entry.name.endswith(TEMPORARY_SUFFIX)):
            continue
        with contextlib.suppress(OSError):
            status = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(status.st_mode) and status.st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
    if removed:
        log.info(
            "temporary files left by an interrupted write removed",
            extra={"fields": {"folder": str(folder), "files": removed}},
        )


def _record(job: Job) -> dict[str, Any]:
    """A job in the API's own shape, so that reading it back goes through `parse_job`;
    completion messages are left out (nothing is counted from them)."""
    return {
        "JobId": job.job_id,
        "JobName": job.name,
        "Status": job.status,
        "CreationDate": job.created,
        "StartDate": job.started,
        "CompletionDate": job.completed,
        "ImportedUsers": job.imported,
        "SkippedUsers": job.skipped,
        "FailedUsers": job.failed,
        "CloudWatchLogsRoleArn": job.log_role_arn,
    }


def _parsed_job(record: object) -> Job:
    """A stored job, checked as an answer of the service is."""
    try:
        return parse_job(record)
    except InvalidJobsPage as error:
        raise ValueError(str(error)) from None


_StoredJob = Annotated[Job, PlainValidator(_parsed_job)]
_Jobs = Annotated[list[_StoredJob], Field(max_length=MAX_STORED_JOBS)]
_Counts = Annotated[
    dict[str, Annotated[int, Field(ge=0, lt=MAX_COUNT)]], Field(max_length=MAX_STORED_JOBS)
]
_WallTime = Annotated[float, Field(ge=0, lt=MAX_USER_COUNT)]


class _StoredHistory(BaseModel):
    """What a stored file holds beyond its format and pool, as the exporter writes it."""

    model_config = ConfigDict(strict=True)

    head: _Jobs
    tail_statuses: _Counts
    tail_users: _Counts
    tail_recent: _Jobs
    boundary: _StoredJob | None
    ordered: bool
    next_full_scan: _WallTime
    last_full_scan: _WallTime | None
    # absent from files written before refreshes were scheduled by age
    last_scan: _WallTime | None = None
    users_total: _Counts


def _check_sound(state: HistoryState) -> None:
    """What a history the exporter wrote always holds; a file that breaks it was edited."""
    if state.boundary is None and (any(state.tail.statuses.values()) or state.tail_recent):
        raise ValueError("a tail of jobs without its boundary job")
    for outcome in OUTCOMES:
        counted = state.tail.users[outcome] + sum(getattr(job, outcome) for job in state.head)
        if state.users_total[outcome] < counted:
            raise ValueError(f"users_total {outcome} is below what its jobs count")
