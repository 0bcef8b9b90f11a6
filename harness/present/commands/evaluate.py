"""lossbench eval: one loss on one input, against the reference."""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from harness import adapters
from harness.adapters import FRAMEWORKS
from harness.measure.evaluate import evaluate, evaluate_gradient
from harness.measure.inputs import parse_json, prepare
from harness.measure.refsets import InputSet
from harness.measure.regimes import DEFAULT_WIDTH
from harness.model.spec import ALL_REGIMES, DEVICES, DTYPES, MODES, REDUCTIONS, Case, Layout, LossSpec
from harness.present import render
from harness.present.options import (
    Command, UsageError, available_memory, load_framework, loss_spec, parse_params, positive_int,
    reference_engine_argument, split_assignment,
)


# The cost model of one eval, measured on the 2-core machine (README): at most about
# 0.15 ms and 1.6 KB per value (bce with --grad in float32, the dearest), rounded up.
SECONDS_PER_VALUE = 2e-4
BYTES_PER_VALUE = 2048
DEFAULT_MAX_VALUES = 200_000  # about 40 s and 400 MB by the model
MAX_LITERAL = 10_000  # characters of one number: its exact value is computed


def json_text(value: str, option: str) -> str:
    """The JSON of an option: the value itself, or the file's contents for @FILE
    (one command-line argument is limited to 128 KiB)."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise UsageError(f"{option} {value}: cannot read {path}: {reason}") from None


def check_cost(texts: dict[str, str], limit: int) -> None:
    """Refuse, before parsing, an input beyond ``limit`` values or beyond this
    machine's available memory, by the cost model; the message says both."""
    values = sum(text.count(",") + 1 for text in texts.values())
    seconds, needed = values * SECONDS_PER_VALUE, values * BYTES_PER_VALUE
    model = (f"about {values:,} values, which by the cost model (0.2 ms and 2 KB per value) take ~{seconds:.0f} s "
             f"and ~{needed / 2**20:,.0f} MiB")
    if needed > available_memory():
        raise UsageError(f"eval input too large: {model}, more than the {available_memory() / 2**30:.1f} GiB "
                         "of memory available; sweep measures large sizes")
    if values > limit:
        raise UsageError(f"eval input too large: {model}; eval takes at most {limit:,} values unless "
                         "--max-elements raises it (sweep measures large sizes)")
    for option, text in texts.items():
        longest = max((len(m.group()) for m in re.finditer(r"[-+.\deE]{%d,}" % (MAX_LITERAL + 1), text)), default=0)
        if longest:
            raise UsageError(f"{option} holds a number of {longest:,} characters; at most {MAX_LITERAL:,}")


def case_from_args(args: argparse.Namespace) -> tuple[Case, dict[str, np.ndarray]]:
    spec = loss_spec(args.loss)
    adapter = load_framework(args.framework)
    impls = adapter.impl_names(spec.name)
    if not impls:
        raise UsageError(f"{args.framework} has no implementation of {spec.name}")
    impl = args.impl or ("stable" if "stable" in impls else impls[0])
    if impl not in impls:
        raise UsageError(f"{args.framework} has no impl {impl!r} for {spec.name} (impls: {', '.join(impls)})")
    if args.device not in adapter.devices():
        raise UsageError(f"device {args.device} is not available to {args.framework} here "
                         f"(available: {', '.join(adapter.devices())})")
    try:
        params = spec.resolve_params(parse_params(args.param))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    mode = args.mode or adapter.modes[0]
    if mode not in adapter.modes:
        raise UsageError(f"{args.framework} has no {mode} mode (modes: {', '.join(adapter.modes)})")
    reduction = args.reduction or spec.default_reduction
    case = Case(spec.name, args.framework, impl, args.dtype, args.device, reduction, tuple(params.items()), mode)
    if args.regime is not None:
        return case, _cell_inputs(args, spec, params)
    texts = {"--input": json_text(args.input, "--input")}
    if args.target is not None:
        texts["--target"] = json_text(args.target, "--target")
    for item in args.arg:
        name, text = split_assignment(item, "--arg")
        if f"--arg {name}" in texts or name in ("input", "target"):
            raise UsageError(f"argument {name!r} given twice")
        texts[f"--arg {name}"] = json_text(text, f"--arg {name}")
    check_cost(texts, args.max_elements)
    raw = {option.removeprefix("--arg ").removeprefix("--"): parse_json(text, option) for option, text in texts.items()}
    return case, prepare(spec, raw, args.dtype)


def _cell_inputs(args: argparse.Namespace, spec: LossSpec, params: dict[str, float]) -> dict[str, np.ndarray]:
    """The inputs of the sweep's cell (loss, dtype, regime, size, seed, width), as the
    sweep generates them, so a report's worst cell can be looked at item by item."""
    if args.size is None:
        raise UsageError("--regime needs --size (the cell's input elements)")
    if args.target is not None or args.arg:
        raise UsageError("--regime generates every argument: drop --target and --arg")
    if args.regime not in spec.regimes:
        raise UsageError(f"{spec.name} has no {args.regime} regime (regimes: {', '.join(spec.regimes)})")
    width = args.width if spec.layout is Layout.ROWWISE else 1
    values = args.size * len(spec.args)
    if values > args.max_elements:
        raise UsageError(f"eval input too large: {values:,} values; eval takes at most {args.max_elements:,} "
                         "unless --max-elements raises it")
    return InputSet(spec.name, tuple(params.items()), args.dtype, args.regime, args.seed, width).inputs(args.size)


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("loss")
    parser.add_argument("--framework", required=True, choices=list(FRAMEWORKS))
    parser.add_argument("--impl", help="implementation (default: numpy 'stable', else the framework's only one)")
    parser.add_argument("--dtype", required=True, choices=DTYPES)
    parser.add_argument("--device", default="cpu", choices=DEVICES)
    parser.add_argument("--mode", choices=MODES,
                        help="eager (op by op) or compiled (torch.compile, XLA, jax.jit); default: the framework's "
                             "own, eager where it has one (PyTensor always compiles)")
    parser.add_argument("--reduction", choices=REDUCTIONS, help="default: the loss's own (mean; sum for penalties)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="loss parameter, repeatable")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", metavar="JSON", help="the values as JSON, or @FILE to read them")
    given.add_argument("--regime", choices=ALL_REGIMES,
                       help="instead of --input: the inputs a sweep's cell of this regime measures (with --size)")
    parser.add_argument("--size", type=positive_int, metavar="N", help="with --regime: the cell's size")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="with --regime: the cell's seed (default 0)")
    parser.add_argument("--width", type=positive_int, default=DEFAULT_WIDTH, metavar="W",
                        help=f"with --regime: the row width of a row-wise loss (default {DEFAULT_WIDTH})")
    parser.add_argument("--target", metavar="JSON",
                        help="required unless the loss has no target (penalties); JSON or @FILE")
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=JSON",
                        help="extra argument (JSON or @FILE), repeatable")
    parser.add_argument("--max-elements", type=positive_int, default=DEFAULT_MAX_VALUES, metavar="N",
                        help=f"refuse inputs of more values (default {DEFAULT_MAX_VALUES:,}: about "
                             f"{DEFAULT_MAX_VALUES * SECONDS_PER_VALUE:.0f} s by the cost model)")
    parser.add_argument("--grad", action="store_true",
                        help="also the gradient of the reduced loss with respect to input, against the reference derivative")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="run the framework with N threads where its results depend on the count (torch "
                             "splits reductions and vectorised loops by thread); a sweep measures with its "
                             "workers' count (default: the framework's own)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    reference_engine_argument(parser)


def _run_eval(args: argparse.Namespace) -> int:
    case, arrays = case_from_args(args)
    if args.grad and case.reduction == "none":
        raise UsageError("--grad needs a reduced loss: use --reduction mean or sum")
    result = evaluate(case, arrays, args.reference_engine, args.threads)
    adapter = adapters.load(case.framework)
    record = render.result_json(result, adapter.version())
    failed = bool(result.error)
    if args.grad:
        grad = evaluate_gradient(case, arrays, args.reference_engine, args.threads)
        record.update(render.gradient_json(grad, arrays["input"].shape, adapter.gradient_method))
        failed = failed or bool(grad.error)
    if args.json:
        print(json.dumps(record))
    else:
        render.print_eval(record)
        if args.grad:
            render.print_gradient(record)
    return 1 if failed else 0


COMMANDS = (Command("eval", "evaluate one loss on one input against the reference", _eval_arguments, _run_eval),)
