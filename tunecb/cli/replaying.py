"""The subcommands that carry a finished trial on: ``retrain``, ``rerun`` and ``evaluate``
(their flags, and what they print).

>>> main(["retrain", "results/digits"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from tunecb.cli.printers import err, out
from tunecb.wording import short

if TYPE_CHECKING:
    from tunecb.replay.rerun import RerunResult

_PICK_HELP = "the trial to retrain: its number (default: the best trial)"


def add_parsers(sub: Any, common: argparse.ArgumentParser, positive_int: Any) -> None:
    """Add ``retrain``, ``rerun`` and ``evaluate`` to the ``tunecb`` subparsers."""
    # Every replay command reads one results folder and may need the study file.
    trial_source = argparse.ArgumentParser(add_help=False, parents=[common])
    trial_source.add_argument("path", metavar="RESULTS_DIR", help="e.g. results/digits")
    trial_source.add_argument(
        "--study", metavar="STUDY.py", help="the study file that declares the trial's study "
        "(default: the one it ran from, recorded in its trial.json)",
    )  # fmt: skip
    retrain = sub.add_parser(
        "retrain",
        parents=[trial_source],
        help="fit the best trial's configuration on training + validation data",
        description="Rebuild the best trial's model (or --trial N, --rank K) with its "
        "parameters and seed, fit it on the training and validation data together for as "
        "many epochs as its best epoch (--epochs to choose), replaying its learning rates, "
        "and save trials/<n>/final.keras with a record in final.json. With a test split "
        "(the data function returns (train, validation, test)) the final model and the "
        "trial's best checkpoint are evaluated on it.",
    )
    pick = retrain.add_mutually_exclusive_group()
    pick.add_argument("--trial", type=positive_or_zero, metavar="N", help=_PICK_HELP)
    pick.add_argument("--rank", type=positive_int, metavar="K", help="the K-th best trial")
    _add_front_choice(retrain)
    retrain.add_argument(
        "--epochs", type=positive_int, metavar="N", help="epochs to train (default: the "
        "trial's best epoch)",
    )  # fmt: skip
    retrain.add_argument(
        "--train-only", action="store_true",
        help="fit on the training data only, not merged with the validation data",
    )  # fmt: skip

    rerun = sub.add_parser(
        "rerun",
        parents=[trial_source],
        help="fit one trial again and compare it with its recorded values",
        description="Fit trial N again with its recorded seed, parameters and settings "
        "(deterministic ops on), and print each epoch's value beside the recorded one. "
        "When they differ, says why: a GPU, a resumed trial, a changed study file or data, "
        "other library versions. The trial's files are not touched.",
    )
    rerun.add_argument(
        "trial", type=positive_or_zero, nargs="?", metavar="N",
        help="the trial's number (or a front member by --best-on/--within)",
    )  # fmt: skip
    _add_front_choice(rerun)

    evaluate = sub.add_parser(
        "evaluate",
        parents=[trial_source],
        help="test metrics of the best checkpoints, on the data function's test split",
        description="Evaluate the best checkpoints of the --top K trials (or of --trial N, "
        "or of a front member by --best-on/--within) and their final.keras, if retrained, "
        "on the test split the study's data function returns as its third item; the "
        "report shows the results.",
    )
    evaluate.add_argument(
        "--top", type=positive_int, default=None, metavar="K",
        help="the K best trials (default 1; a multi-objective study's front comes first)",
    )  # fmt: skip
    evaluate.add_argument(
        "--trial", type=positive_or_zero, metavar="N", help="the trial to evaluate: its number"
    )
    _add_front_choice(evaluate)


def _add_front_choice(parser: argparse.ArgumentParser) -> None:
    """``--best-on`` and ``--within``: a multi-objective study's front member, chosen as
    ``tunecb.load_best`` chooses it."""
    parser.add_argument(
        "--best-on", metavar="OBJECTIVE",
        help="multi-objective study: the front member best on OBJECTIVE (with --within)",
    )  # fmt: skip
    parser.add_argument(
        "--within", action="append", metavar="NAME=LIMIT",
        help="multi-objective study: only front members with NAME at most (a minimised "
        "objective) or at least (a maximised one) LIMIT; repeatable",
    )  # fmt: skip


def positive_or_zero(text: str) -> int:
    """A trial number: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a trial number (0, 1, ...), got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``retrain``, ``rerun`` or ``evaluate``; returns the exit code."""
    if not args.debug:  # TensorFlow's C++ logs (a dataset attribute it does not know...)
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.command == "retrain":
        return _retrain(args)
    if args.command == "rerun":
        return _rerun(args)
    return _evaluate(args)


def _notes(notes: list[str]) -> None:
    for note in notes:
        err(f"tunecb: note: {note}")


def _metrics(metrics: dict[str, float] | None) -> str:
    if not metrics:
        return ""
    return ", ".join(f"{k.removeprefix('test_')} {v:.4g}" for k, v in metrics.items())


def _retrain(args: argparse.Namespace) -> int:
    from tunecb.replay.retrain import retrain

    result = retrain(
        args.path, trial=args.trial, rank=args.rank, epochs=args.epochs, study=args.study,
        merge=not args.train_only, best_on=args.best_on, within=args.within,
    )  # fmt: skip
    _notes(result.notes)
    data = "training + validation" if result.merged else "training"
    rows = f" ({result.rows} samples)" if result.rows else ""
    out(
        f"retrained trial {result.trial} on the {data} data{rows} for {result.epochs} "
        f"epochs in {result.duration_s:.1f} s: {result.path}"
    )
    if result.test:
        out(f"test: final model {_metrics(result.test)}")
        if result.checkpoint_test:
            out(f"      trial {result.trial}'s best checkpoint {_metrics(result.checkpoint_test)}")
    return 0


def _rerun(args: argparse.Namespace) -> int:
    from tunecb.replay.rerun import rerun

    result = rerun(
        args.path, args.trial, study=args.study, best_on=args.best_on, within=args.within
    )
    shown = max(len(result.curve), len(result.recorded_curve))
    out(f"trial {result.trial}, {result.monitor} per epoch: recorded / rerun")
    for epoch in range(shown):
        then = _at(result.recorded_curve, epoch)
        now = _at(result.curve, epoch)
        mark = "" if then == now else "  differs"
        out(f"  epoch {epoch + 1:>3}  {_num(then):>12}  {_num(now):>12}{mark}")
    if result.objectives:
        out("objectives at the result epoch: " + _compared(result.objectives))
    out(_verdict(result))
    if result.identical:
        return 0
    why = "; ".join(result.reasons) or (
        "no known cause (same study file, data, versions and CPU): some op was not deterministic"
    )
    out(f"why: {why}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from tunecb.replay.evaluate import evaluate

    rows = evaluate(
        args.path, top=args.top, study=args.study, trial=args.trial, best_on=args.best_on,
        within=args.within,
    )  # fmt: skip
    for row in rows:
        values = row.get("objectives") or {"value": row["value"]}
        shown = ", ".join(f"{k} {_num(v)}" for k, v in values.items())
        line = f"rank {row['rank']}, trial {row['trial']} ({shown}): "
        line += f"best checkpoint {_metrics(row['test'])}"
        if row["final_test"]:
            line += f"; final model {_metrics(row['final_test'])}"
        out(line)
    return 0


def _verdict(result: RerunResult) -> str:
    """The rerun's one-line verdict: ``identical: ...``, or what ``differs``: the monitored
    value, or (a multi-objective trial) the objectives that came out otherwise."""
    alike = f"{result.monitor} {_num(result.value)} as recorded, every epoch alike"
    if result.identical:
        return f"identical: {alike}"
    if result.monitor_identical:
        return f"differs: {_compared(result.differing)}; {alike}"
    return (
        f"differs: {result.monitor} {_num(result.value)} now, {_num(result.recorded)} recorded; "
        f"largest difference over the epochs {result.max_difference:.3g}"
    )


def _compared(objectives: dict[str, list[float | None]]) -> str:
    """``val_accuracy 0.9 as recorded, params 9 as recorded`` (or ``... now, ... recorded``)."""
    parts = []
    for name, (then, now) in objectives.items():
        said = "as recorded" if then == now else f"now, {_num(then)} recorded"
        parts.append(f"{name} {_num(now)} {said}")
    return ", ".join(parts)


def _at(values: list[float | None], index: int) -> float | None:
    return values[index] if index < len(values) else None


def _num(value: float | None) -> str:
    return short(value, 6, missing="—")
