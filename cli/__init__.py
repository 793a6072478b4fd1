"""The command line: `python main.py COMMAND`, or `flask --app main COMMAND`.

Built on click, as Flask's own command line is. A command's module is imported only when that
command runs: `status` never loads AutoGen or the HTTP stack (bench/cli_startup.py measures it).
Every expected failure ends as one line on stderr and a non-zero exit (`cli.running`).
"""

from __future__ import annotations

import importlib
import sys

import click

from cli.running import CommandFailed, Options

# Each command, in the order `--help` lists them, and the "module:function" that defines it.
COMMANDS = {
    "demo": "cli.demo:demo",
    "chat": "cli.demo:chat",
    "create-workspace": "cli.workspaces:create_workspace",
    "update-workspace": "cli.workspaces:update_workspace",
    "rotate-key": "cli.workspaces:rotate_key",
    "load-crm": "cli.workspaces:load_crm",
    "record-circuit": "cli.sending:record_circuit",
    "send": "cli.sending:send",
    "status": "cli.sending:status",
    "self-correct": "cli.sending:self_correct",
    "serve": "cli.service:serve",
    "worker": "cli.service:worker",
    "beat": "cli.service:beat",
}


class _LazyGroup(click.Group):
    """A group that imports a command's module when the command is asked for (click's
    documented pattern for lazily loaded subcommands)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None


def load_command(name: str) -> click.Command:
    """The command called `name`, its module imported."""
    module, attribute = COMMANDS[name].split(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    return command


@click.group(
    cls=_LazyGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log INFO lines, the frameworks' (AutoGen, aiosmtpd, Alembic) included.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Circuit-bound email execution: sends the email CX06 produced, once CX01-CX06 passed.

    With no command, runs the demonstration (`demo`). Settings come from the environment and
    a .env file (the environment wins); see the README's "Configuration".
    """
    ctx.obj = Options(verbose=verbose)
    if ctx.invoked_subcommand is None:
        ctx.invoke(load_command("demo"))


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status. An expected failure is one line on stderr.

    A command that fails says so by raising (`CommandFailed`, or `ctx.exit(1)`), never by
    returning a number: so its exit status is the same under `flask --app main`."""
    try:
        result = cli.main(args=argv, prog_name="main.py", standalone_mode=False)
    except CommandFailed as failure:
        failure.show()
        return failure.exit_code
    except click.UsageError as error:
        hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
        print(f"error: {error.format_message()}{hint}", file=sys.stderr)
        return error.exit_code
    except click.ClickException as error:
        print(f"error: {error.format_message()}", file=sys.stderr)
        return error.exit_code
    except (click.Abort, KeyboardInterrupt):
        return 130
    return result if isinstance(result, int) else 0  # an int: a `ctx.exit` status
