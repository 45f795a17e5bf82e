"""Running a long-lived verb (ticker, worker) the way skytools and pgqd do: in the foreground or
daemonized, guarded by a pidfile, stopped and reloaded by signals.

API (one job per process, so the state is module-level):

    dispatch(name, body, config=..., pidfile=..., logfile=..., flags=OPTIONS, check=None,
             log_format="text")
        The one call a verb makes. With flags.stop / .kill / .reload it signals the running
        copy (see `control`); otherwise it runs `body()` (see `run`), daemonized with flags.daemon.
    run(name, body, config=..., pidfile=..., logfile=..., daemonize=False, verbose=0, quiet=False,
        check=None, log_format="text")
        Refuses to start when the pidfile names a live process, then runs `check()`, the job's
        start-up checks (its database reachable, its node there, ...), in the caller's process
        and before anything detaches: with -d too, a job that cannot work fails at once, on the
        terminal, with a non-zero exit and no daemon left behind (what fails later is the
        job's to retry). Then it removes a stale pidfile, writes ours
        (removed at exit), sets up logging (logsetup), installs the signal handlers, logs
        "Starting londiste-rs NAME VERSION" and calls `body()`. With `daemonize` the caller's
        process returns (or raises the startup error) once the daemon is running; the daemon
        itself never returns from `run`.
    control(action, config=..., pidfile=..., name=...)
        "stop": SIGINT, then wait until the process is gone; "kill": SIGTERM, wait, SIGKILL if it
        lingers; "reload": SIGHUP.
    stop_requested() -> bool     SIGINT or SIGTERM arrived: finish the current step and return.
    sleep(seconds) -> bool       sleeps, woken early by any signal; False when a stop is pending.
    reload_requested() -> bool   a SIGHUP arrived since the last call (the logfile is reopened
                                 already); the body re-reads its config.

Signal meanings follow skytools: SIGINT = stop safely (`-s`), SIGTERM = stop (`-k`, followed by
SIGKILL when the process does not go), SIGHUP = reload (`-r`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn, Protocol

from londiste_rs.errors import LondisteError
from londiste_rs.logsetup import log_to_file_only, reopen_logfiles, setup_logging
from londiste_rs.waiting import wait_for

log = logging.getLogger(__name__)

STOP_TIMEOUT = 60.0  # -s: a step in progress (a batch, a maintenance call) may take a while
KILL_TIMEOUT = 10.0  # -k: after this, SIGKILL
STARTUP_TIMEOUT = 30.0  # -d: how long the caller waits for the daemon to report it runs


class DaemonError(LondisteError):
    """Starting, stopping or signalling a daemon failed (already running, not running, ...)."""


class Flags(Protocol):
    """londiste3's global options, as `londiste_rs.cli.app.OPTIONS` holds them."""

    daemon: bool
    stop: bool
    kill: bool
    reload: bool
    verbose: int
    quiet: bool


# -- signals -------------------------------------------------------------------------------
_stop = False
_reload = False
_wake_r = -1
_wake_w = -1


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stop, _reload
    if signum == signal.SIGHUP:
        _reload = True
    else:
        _stop = True
    # Wake up `sleep`: a signal handler must not take locks, but writing a pipe is safe.
    with contextlib.suppress(OSError):
        os.write(_wake_w, b"x")


def install_signal_handlers() -> None:
    """SIGINT/SIGTERM request a stop, SIGHUP a reload; each wakes up `sleep`."""
    global _wake_r, _wake_w, _stop, _reload
    if _wake_r < 0:
        _wake_r, _wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _stop = _reload = False
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)


def stop_requested() -> bool:
    return _stop


def request_stop() -> None:
    """Asks the loop to stop, as SIGINT does (for bodies that decide to end themselves)."""
    _on_signal(signal.SIGINT, None)


def sleep(seconds: float, also: int | Sequence[int] | None = None) -> bool:
    """Sleeps up to `seconds`, waking early on any signal (or when a file descriptor in
    `also`, e.g. a LISTENing connection's socket, becomes readable); returns False when a
    stop is pending."""
    if _stop:
        return False
    if seconds > 0:
        extra = [] if also is None else [also] if isinstance(also, int) else list(also)
        fds = [fd for fd in (_wake_r, *extra) if fd >= 0]
        ready, _, _ = select.select(fds, [], [], seconds)
        if _wake_r >= 0 and _wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(_wake_r, 4096)
    return not _stop


def reload_requested() -> bool:
    """True once per SIGHUP; the logfile has been reopened by then."""
    global _reload
    if not _reload:
        return False
    _reload = False
    reopen_logfiles()
    log.info("reload requested (SIGHUP)")
    return True


# -- pidfiles ------------------------------------------------------------------------------
def read_pid(pidfile: Path) -> int | None:
    """The pid a pidfile names, or None when it is missing or unreadable."""
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie counts as gone: it has exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _is_ours(pid: int) -> bool:
    """Whether a live `pid` is a londiste-rs process, not an unrelated one that reused the pid
    after a reboot (without /proc we cannot tell, and assume it is)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return True
    return b"londiste" in cmdline


def running_pid(pidfile: Path) -> int | None:
    """The pid of the live londiste-rs process the pidfile names, else None."""
    pid = read_pid(pidfile)
    if pid is None or pid == os.getpid():
        return None
    return pid if process_alive(pid) and _is_ours(pid) else None


def _already_running(pid: int, config: Path) -> DaemonError:
    return DaemonError(f"already running (pid {pid}); stop it with 'londiste-rs -s {config}'")


def _claim_pidfile(pidfile: Path, config: Path) -> None:
    """Writes our pid, atomically (O_EXCL); a stale pidfile is removed first."""
    try:
        pidfile.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DaemonError(
            f"cannot create the pidfile directory {pidfile.parent}: {e.strerror}; "
            "fix 'pidfile' or the permissions"
        ) from None
    for _ in range(3):
        try:
            fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = running_pid(pidfile)
            if pid is not None:
                raise _already_running(pid, config) from None
            log.debug("removing stale pidfile %s", pidfile)
            with contextlib.suppress(FileNotFoundError):
                pidfile.unlink()
            continue
        except OSError as e:
            raise DaemonError(
                f"cannot write pidfile {pidfile}: {e.strerror}; fix 'pidfile' or the permissions"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return
    raise DaemonError(f"pidfile {pidfile} keeps reappearing; is another copy starting?")


def _release_pidfile(pidfile: Path | None) -> None:
    if pidfile is not None and read_pid(pidfile) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()


# -- running -------------------------------------------------------------------------------
def dispatch(
    name: str,
    body: Callable[[], None],
    *,
    config: Path,
    pidfile: Path | None,
    logfile: Path | None,
    flags: Flags,
    check: Callable[[], None] | None = None,
    log_format: str = "text",
) -> None:
    """Signals the running copy (flags.stop/kill/reload) or runs `body` (see the module doc)."""
    action = "stop" if flags.stop else "kill" if flags.kill else "reload" if flags.reload else ""
    if action:
        control(action, config=config, pidfile=pidfile, name=name)
        return
    run(
        name,
        body,
        config=config,
        pidfile=pidfile,
        logfile=logfile,
        daemonize=flags.daemon,
        verbose=flags.verbose,
        quiet=flags.quiet,
        check=check,
        log_format=log_format,
    )


def run(
    name: str,
    body: Callable[[], None],
    *,
    config: Path,
    pidfile: Path | None,
    logfile: Path | None,
    daemonize: bool = False,
    verbose: int = 0,
    quiet: bool = False,
    check: Callable[[], None] | None = None,
    log_format: str = "text",
) -> None:
    """Runs `body()` as the job `name` (see the module doc)."""
    if daemonize and pidfile is None:
        raise DaemonError(
            f"{config}: running in the background (-d) needs a pidfile; "
            f"add 'pidfile = pid/{name}.pid' to the config"
        )
    if pidfile is not None:
        pid = running_pid(pidfile)
        if pid is not None:  # checked here too, so that -d reports it on the terminal
            raise _already_running(pid, config)
    if check is not None:
        check()  # before detaching: its error is the caller's one line and exit code
    if daemonize:
        _run_daemonized(name, body, config, pidfile, logfile, verbose, quiet, log_format)
        return
    if pidfile is not None:
        _claim_pidfile(pidfile, config)
    try:
        setup_logging(logfile, to_stderr=True, verbose=verbose, quiet=quiet, log_format=log_format)
        install_signal_handlers()
        log.info("Starting londiste-rs %s %s", name, _version())
        body()
        log.info("%s stopped", name)
    except LondisteError as e:
        # The CLI prints it on stderr; the logfile should say why the job ended too.
        log_to_file_only(log, logging.ERROR, f"{name} stopped: {e}")
        raise
    finally:
        _release_pidfile(pidfile)


def _run_daemonized(
    name: str,
    body: Callable[[], None],
    config: Path,
    pidfile: Path | None,
    logfile: Path | None,
    verbose: int,
    quiet: bool,
    log_format: str,
) -> None:
    """Double fork + setsid. The daemon reports "ok" or its startup error through a pipe, so
    the caller can exit 0 only when the daemon really runs."""
    report_r, report_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child > 0:
        os.close(report_w)
        os.waitpid(child, 0)
        _await_startup(report_r, name, logfile)
        return
    # First child: a new session, then fork again so the daemon can never regain a terminal.
    try:
        os.close(report_r)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
    except BaseException:
        os._exit(1)
    _daemon_main(name, body, config, pidfile, logfile, verbose, quiet, log_format, report_w)


def _await_startup(report_r: int, name: str, logfile: Path | None) -> None:
    chunks: list[bytes] = []
    with os.fdopen(report_r, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], STARTUP_TIMEOUT)
        if ready:
            chunks.append(pipe.read())
    message = b"".join(chunks).decode(errors="replace").strip()
    if message == "ok":
        return
    if not message:
        where = f"; see {logfile}" if logfile else ""
        message = f"{name} did not start (exited or hung during startup){where}"
    raise DaemonError(message)


def _daemon_main(
    name: str,
    body: Callable[[], None],
    config: Path,
    pidfile: Path | None,
    logfile: Path | None,
    verbose: int,
    quiet: bool,
    log_format: str,
    report_w: int,
) -> NoReturn:
    """The daemon process: never returns into the caller's code."""
    code = 0
    reported = False

    def report(message: str) -> None:
        nonlocal reported
        if not reported:
            reported = True
            with contextlib.suppress(OSError):
                os.write(report_w, message.encode())
                os.close(report_w)

    try:
        _detach_stdio()
        if pidfile is not None:
            _claim_pidfile(pidfile, config)
        setup_logging(logfile, to_stderr=False, verbose=verbose, quiet=quiet, log_format=log_format)
        install_signal_handlers()
        log.info("Starting londiste-rs %s %s", name, _version())
        report("ok")
        body()
        log.info("%s stopped", name)
    except LondisteError as e:
        report(str(e))
        log.error("%s stopped: %s", name, e)
        code = e.exit_code
    except BaseException as e:
        report(f"{name} failed: {type(e).__name__}: {e}")
        log.exception("%s failed", name)
        code = 70
    finally:
        _release_pidfile(pidfile)
        logging.shutdown()
    os._exit(code)


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


def _version() -> str:
    from londiste_rs import __version__

    return __version__


# -- signalling the running copy -----------------------------------------------------------
def control(action: str, *, config: Path, pidfile: Path | None, name: str) -> None:
    """Signals the process the pidfile names: "stop", "kill" or "reload" (module doc)."""
    if pidfile is None:
        raise DaemonError(
            f"{config}: has no pidfile, so there is no daemon to {action}; "
            "add 'pidfile = ...' to the config (and start it with -d)"
        )
    pid = read_pid(pidfile)
    if pid is None:
        raise DaemonError(f"{name} is not running (no pidfile {pidfile}); nothing to {action}")
    if not process_alive(pid) or not _is_ours(pid):
        with contextlib.suppress(FileNotFoundError):
            pidfile.unlink()
        raise DaemonError(
            f"{name} is not running (pid {pid} is gone); removed the stale pidfile {pidfile}"
        )
    signum = {"stop": signal.SIGINT, "kill": signal.SIGTERM, "reload": signal.SIGHUP}[action]
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return
    except PermissionError:
        raise DaemonError(
            f"not allowed to signal pid {pid}; run this as the user that started {name}"
        ) from None
    if action == "reload":
        return
    timeout = STOP_TIMEOUT if action == "stop" else KILL_TIMEOUT
    try:
        wait_for(f"{name} (pid {pid}) to exit", lambda: not process_alive(pid), timeout=timeout)
    except TimeoutError:
        if action == "stop":
            raise DaemonError(
                f"{name} (pid {pid}) is still running {timeout:.0f}s after SIGINT; "
                f"'londiste-rs -k {config}' kills it"
            ) from None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(f"{name} (pid {pid}) to die", lambda: not process_alive(pid), timeout=10)
    if read_pid(pidfile) == pid:  # a killed process cannot clean up after itself
        with contextlib.suppress(OSError):
            pidfile.unlink()
