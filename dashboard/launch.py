"""Start the Streamlit dashboard in a subprocess (``autopeft dashboard``).

A subprocess rather than Streamlit's in-process bootstrap: ``streamlit run`` owns signal
handling and its event loop, and Ctrl-C then ends it cleanly. The storage URL reaches the
app in ``$AUTOPEFT_DASHBOARD_STORAGE``, not on the command line: a password in argv would be
readable by every local user through ``ps``. Only the masked URL is ever printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The installed app script, beside this module (``autopeft/dashboard/app.py``); it imports
#: ``autopeft.*`` absolutely, so it runs from any working directory.
APP = Path(__file__).resolve().parent / "app.py"


#: Streamlit's toolbar: "minimal" shows only options set by the app (none), so no Deploy button.
TOOLBAR = ("--client.toolbarMode", "minimal")


def command(*, host: str = "127.0.0.1", port: int = 8501, read_only: bool = False) -> list[str]:
    """The ``streamlit run`` command line for the dashboard (the URL goes in the environment)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           "--server.address", host, "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           # No "Deploy" button or developer menu: the dashboard is a tool here, not an app being
           # written. A flag rather than .streamlit/config.toml beside app.py, which Streamlit
           # never reads (it looks in the working directory and ~/.streamlit).
           *TOOLBAR, "--"]
    return cmd + (["--read-only"] if read_only else [])


def launch(storage_url: str, *, host: str = "127.0.0.1", port: int = 8501, read_only: bool = False) -> int:
    """Run the dashboard until it exits or Ctrl-C; returns the exit code (130 on Ctrl-C).

    Binds ``127.0.0.1`` unless told otherwise: the dashboard can create studies, so it is
    not exposed to the network by default.
    """
    from autopeft.store import mask_url

    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::") else host
    print(f"autopeft dashboard on {mask_url(storage_url)}" + (" (read-only)" if read_only else ""), flush=True)
    print(f"  open http://{shown}:{port}  (Ctrl-C to stop)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"  warning: listening on {host}: anyone who can reach this port can read the studies"
              + ("" if read_only else " and create new ones (use --read-only to prevent that)"), flush=True)
    # Streamlit's own banner would repeat the URL; quiet it down to warnings.
    cmd = command(host=host, port=port, read_only=read_only)
    cmd[5:5] = ["--logger.level", "warning"]
    env = {**os.environ, "AUTOPEFT_DASHBOARD_STORAGE": storage_url}
    try:
        proc = subprocess.Popen(cmd, env=env)
    except OSError as e:
        print(f"autopeft: error: cannot start streamlit: {e}", file=sys.stderr)
        return 2
    previous = _stop_child_on_sigterm()
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _stop_child_on_sigterm():
    """On SIGTERM (a service manager, a test harness) stop Streamlit too instead of orphaning
    it; returns the previous handler to restore (None when not on the main thread)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None  # signal handlers can only be set from the main thread

    def handler(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)
