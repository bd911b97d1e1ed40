"""The ``signalyard`` command. Each group of subcommands lives in its own module."""

from __future__ import annotations

import os
import sys

import click
from aiokafka.errors import KafkaConnectionError

from signalyard.cli.adaptation import feedback, retrain, trainer
from signalyard.cli.alerts import alerts
from signalyard.cli.backtest import backtest, replay
from signalyard.cli.demo import demo
from signalyard.cli.distill import distill
from signalyard.cli.encoders import encoders
from signalyard.cli.errors import USER_ERRORS, fail
from signalyard.cli.explain import explain
from signalyard.cli.grafana import grafana
from signalyard.cli.models import evaluate_command, models, train
from signalyard.cli.pipeline import produce_file, worker
from signalyard.cli.provision import init
from signalyard.cli.sql import sql
from signalyard.cli.stack import stack


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--verbose", is_flag=True, help="Show third-party libraries' progress bars and notices too."
)
def cli(verbose: bool) -> None:
    """Streaming analytics on Kafka with fine-tuned language models."""
    if not verbose:
        quiet_libraries()


def quiet_libraries() -> None:
    """Keep Hugging Face's progress bars ("Loading weights") and advisory notices out of the
    commands' output; the project's own progress stays. Set before the libraries load, and
    applied to them as well when they are loaded already."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()


cli.add_command(stack)
cli.add_command(alerts)
cli.add_command(init)
cli.add_command(demo)
cli.add_command(encoders)
cli.add_command(train)
cli.add_command(distill)
cli.add_command(explain)
cli.add_command(evaluate_command)
cli.add_command(models)
cli.add_command(worker)
cli.add_command(produce_file)
cli.add_command(replay)
cli.add_command(backtest)
cli.add_command(sql)
cli.add_command(feedback)
cli.add_command(retrain)
cli.add_command(trainer)
cli.add_command(grafana)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors and bad arguments end in one line on stderr and a non-zero exit."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        args = ["--help"]
    try:
        # Without standalone mode click returns the code of an Exit instead of raising it.
        code = cli.main(args=args, prog_name="signalyard", standalone_mode=False)
    except click.UsageError as error:
        fail(error.format_message(), code=2)
    except click.Abort:
        fail("aborted", code=130)
    except USER_ERRORS as error:
        fail(str(error))
    except KafkaConnectionError as error:
        # aiokafka logs why (refused, authentication failed) and raises only "unable to
        # bootstrap"; this line says what to check.
        fail(
            f"cannot connect to Kafka ({error}); is the broker up, and are kafka.security_protocol "
            "and the credentials right?"
        )
    if isinstance(code, int) and code != 0:
        sys.exit(code)
