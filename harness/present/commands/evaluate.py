"""lossbench eval: one loss on one input, against the reference."""
from __future__ import annotations

import argparse
import json
from typing import Any

from harness import adapters
from harness.adapters import FRAMEWORKS
from harness.measure.evaluate import evaluate, evaluate_gradient
from harness.measure.inputs import parse_json, prepare
from harness.model import registry
from harness.model.spec import DEVICES, DTYPES, REDUCTIONS, Case
from harness.present import render
from harness.present.options import (
    Command, UsageError, load_framework, loss_spec, parse_params, reference_engine_argument, split_assignment,
)


def case_from_args(args: argparse.Namespace) -> tuple[Case, dict[str, Any]]:
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
    raw = {"input": parse_json(args.input, "--input")}
    if args.target is not None:
        raw["target"] = parse_json(args.target, "--target")
    for item in args.arg:
        name, text = split_assignment(item, "--arg")
        if name in raw:
            raise UsageError(f"argument {name!r} given twice")
        raw[name] = parse_json(text, f"--arg {name}")
    reduction = args.reduction or spec.default_reduction
    case = Case(spec.name, args.framework, impl, args.dtype, args.device, reduction, tuple(params.items()))
    return case, raw


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("loss")
    parser.add_argument("--framework", required=True, choices=list(FRAMEWORKS))
    parser.add_argument("--impl", help="implementation (default: numpy 'stable', else the framework's only one)")
    parser.add_argument("--dtype", required=True, choices=DTYPES)
    parser.add_argument("--device", default="cpu", choices=DEVICES)
    parser.add_argument("--reduction", choices=REDUCTIONS, help="default: the loss's own (mean; sum for penalties)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="loss parameter, repeatable")
    parser.add_argument("--input", required=True, metavar="JSON")
    parser.add_argument("--target", metavar="JSON", help="required unless the loss has no target (penalties)")
    parser.add_argument("--arg", action="append", default=[], metavar="NAME=JSON", help="extra argument, repeatable")
    parser.add_argument("--grad", action="store_true",
                        help="also the gradient of the reduced loss with respect to input, against the reference derivative")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    reference_engine_argument(parser)


def _run_eval(args: argparse.Namespace) -> int:
    case, raw = case_from_args(args)
    arrays = prepare(registry.get(case.loss), raw, case.dtype)
    if args.grad and case.reduction == "none":
        raise UsageError("--grad needs a reduced loss: use --reduction mean or sum")
    result = evaluate(case, arrays, args.reference_engine)
    adapter = adapters.load(case.framework)
    record = render.result_json(result, adapter.version())
    failed = bool(result.error)
    if args.grad:
        grad = evaluate_gradient(case, arrays, args.reference_engine)
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
