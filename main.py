"""Command line for the circuit-bound email service (the commands are in `cli/`).

`python main.py` with no arguments runs the group chat end to end on the embedded defaults
(SQLite file, built-in development SMTP server writing to ./outbox/); `python main.py --help`
lists the commands. `flask --app main COMMAND` runs the same commands the Flask way.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

# Loading SQLAlchemy, pydantic and the models allocates enough to set off the cyclic garbage
# collector again and again, over objects that live as long as the process; and at exit it
# walks them once more. Collection is held off while they load, and what they built is frozen
# out of its reach (gc.freeze): `status` takes 0.1-0.2 s less (0.47-0.52 s against 0.63-0.71).
gc.disable()
try:
    from cli import COMMANDS, load_command, main
finally:
    gc.freeze()
    gc.enable()


def create_app() -> Any:
    """For `flask --app main`: the HTTP API, with this command line's commands on `flask`.

    Settings that cannot be used are one line and an exit, as for any command: Flask would
    print the traceback of a factory's error while it lists the commands.
    """
    from api import create_app as create_api
    from cli.running import CommandFailed, start

    try:
        start(service=True)
    except CommandFailed as failure:
        failure.show()
        raise SystemExit(failure.exit_code) from None
    app = create_api()
    for name in COMMANDS:
        app.cli.add_command(load_command(name))
    return app


if __name__ == "__main__":
    sys.exit(main())
