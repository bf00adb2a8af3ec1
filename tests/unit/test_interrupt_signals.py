"""A SIGTERM that the CLI turns into an interruption is counted like Ctrl-C while trials
run, so that one lost or wrapped inside a trial still stops the search with its own kind
(issue 18, finding 7). A real signal to this process; no training."""

from __future__ import annotations

import os
import signal

import pytest

from tunecb import interrupts


class Terminated(KeyboardInterrupt):  # what tunecb.cli.commands raises on SIGTERM
    pass


def test_a_sigterm_lost_inside_a_trial_is_raised_again_as_its_handler_raises_it():
    def handler(signum, frame):
        raise Terminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with interrupts.watched():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(10_000):  # the handler runs here
                    pass
            except Terminated:
                pass  # lost (C code that clears it), or wrapped in another error:
            try:
                raise RuntimeError("data pipeline aborted")
            except RuntimeError as exc:
                with pytest.raises(Terminated):
                    interrupts.raise_if_interrupted(exc)
            with pytest.raises(Terminated):
                interrupts.check()
        assert not interrupts.pending()  # the block's end answers it
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_error_of_its_own_stays_the_trials_failure():
    with interrupts.watched():
        try:
            raise ValueError("bad")
        except ValueError as exc:
            interrupts.raise_if_interrupted(exc)  # does not raise
