"""The signals that stop a long-running command cleanly, and what a hang-up leaves behind.

Owns the list of stop signals of `venue serve` and `venue cluster` (SIGINT, SIGTERM and
SIGHUP: a terminal closed sends its session SIGHUP, whose default action killed the venue
with no clean stop) and `detach_hung_up_terminal`: once the terminal is gone, writing to it
fails (EIO), so its descriptors are pointed at /dev/null and the stop's last lines cannot
turn a clean stop into a traceback; `say_after_stop` writes a stop's last line so that a
hang-up its SIGHUP handler has not seen yet cannot fail it either. Output to a file or a pipe
is left as it is.
A SIGHUP ignored at the start (`nohup venue serve &`) stays ignored: `stop_signals`.
"""

import errno
import os
import signal
import termios

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_signals() -> tuple[signal.Signals, ...]:
    """`STOP_SIGNALS` less SIGHUP when it is ignored now (call it before installing any
    handler): the process was started under `nohup`, whose whole point is to outlive its
    terminal. Before, a handler replaced that and `nohup venue serve &` stopped on logout."""
    if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
        return tuple(sig for sig in STOP_SIGNALS if sig != signal.SIGHUP)
    return STOP_SIGNALS


def how_to_stop(signals: tuple[signal.Signals, ...]) -> str:
    """The banner's line saying which signals stop it: SIGHUP not among them when ignored."""
    if signal.SIGHUP in signals:
        return "stop with Ctrl-C (SIGINT), SIGTERM or SIGHUP"
    return "stop with Ctrl-C (SIGINT) or SIGTERM (SIGHUP ignored: started under nohup)"


def detach_hung_up_terminal() -> None:
    """Point stdout and stderr at /dev/null where they are a terminal that has hung up
    (`tcgetattr` fails with EIO there: on a live terminal it succeeds, on a file or a pipe
    it fails with ENOTTY), so that nothing written after a hang-up fails."""
    for fd in (1, 2):
        try:
            termios.tcgetattr(fd)
        except termios.error as failed:
            if failed.args[0] != errno.EIO:
                continue  # a file, a pipe, a closed descriptor: left as it is
        else:
            continue  # a live terminal: a `kill -HUP` while it is open
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)


def say_after_stop(line: str) -> None:
    """Print a stop's last line; on a terminal hung up meanwhile (EIO), detach it and go on.
    The kernel fails writes to a hung-up terminal at once, but Python runs the SIGHUP's
    handler (which detaches) only between bytecodes: a stop done within milliseconds of the
    window closing wrote its last line first, and exited 1 on the EIO."""
    try:
        print(line, flush=True)
    except OSError as failed:
        if failed.errno != errno.EIO:
            raise
        detach_hung_up_terminal()
