"""int8 methods on fine-tuned EfficientNet-Lite0 models (the int8 table in docs/benchmarks.md).

    .venv/bin/python benchmarks/int8.py [--workdir bench-int8] [--models serve digits fashion100]

Models (trained once into WORKDIR, then reused):

* ``serve``: the serving benchmark's model (``benchmarks/serve.py``): 60 Fashion-MNIST
  training images a class, ``ursa train`` with its flags (1 head + 2 epochs, 25 %
  validation split: 150 images).
* ``digits``: scikit-learn's digits, 50 a class, ``ursa``'s defaults, the fixed 500-image
  validation folder of ``benchmarks/small_data.py``.
* ``fashion100``: Fashion-MNIST, 100 a class, the same way.

For each model, every int8 model of every method of ``ursa.export.quantize.METHODS``
(``ursa.export.deploy.try_methods``; one calibration on up to 200 training images, shared,
as ``ursa export --int8`` does; the sensitivity pass and qat each make their all-int8
model, then one model per float prefix that came closer to fp32, and a model identical to
one made before, the sensitivity pass's all-int8 one after static's, is not listed again):
the seconds the method took to make it, top-1 agreement with fp32 on
the validation images, both accuracies, the drop and its 95 % interval, McNemar's p, the
gate's decision at the default rule, the nodes kept in float, and the model time of int8
and fp32 (one image, median of 30 runs; all the models and fp32 measured in five
alternating rounds in the same process, the fastest round of each, as the export does).
``shipped`` marks the model ``ursa export --int8`` ships (``ursa.export.gate.pick``: of the
accepted ones that agree with fp32 on 98 % of the images, the fastest, here by its int8 /
fp32 time ratio; else the accepted one that agrees most). Writes WORKDIR/int8.json and
prints a Markdown table with the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS = ("serve", "digits", "fashion100")
CALIBRATION_IMAGES = 200  # ursa export's default


def train(name: str, workdir: Path) -> tuple[Path, Path]:
    """(bundle, data folder) of model ``name``, trained on first use."""
    bundle = workdir / f"{name}.ursa"
    if name == "serve":
        from serve import fashion_mnist  # benchmarks/serve.py

        data = workdir / "serve-data"
        if not bundle.exists():
            fashion_mnist(data)
            subprocess.run(
                [sys.executable, "-m", "ursa", "train", str(data), "-o", str(bundle),
                 "--epochs", "2", "--freeze-epochs", "1", "--batch-size", "32",
                 "--valid-pct", "0.25", "--lr", "1e-2"],
                check=True,
            )  # fmt: skip
        return bundle, data
    from small_data import make_folder  # benchmarks/small_data.py

    dataset, k = {"digits": ("digits", 50), "fashion100": ("fashion", 100)}[name]
    data = make_folder(workdir / f"{name}-data", dataset, k, seed=0)
    if not bundle.exists():
        import ursa
        from ursa.train import SilentLogger

        learner = ursa.Learner(ursa.ImageData.from_folder(data, seed=0), logger=SilentLogger())
        learner.fine_tune()
        learner.export(bundle)
    return bundle, data


def measure(
    name: str, bundle_path: Path, data: Path, weight_bits: int | None = None
) -> list[dict[str, Any]]:
    """One row per int8 model (a method can make several) for this model."""
    from ursa.core.bundle import read_bundle
    from ursa.export.deploy import (
        calibration_sample,
        calibration_split,
        export_for_serving,
        try_methods,
    )
    from ursa.export.gate import GateRule, pick
    from ursa.export.qat import QatSource
    from ursa.export.quantize import (
        METHODS,
        Quantizer,
        load_inputs,
        session_for,
        side_by_side_ms,
        top1,
    )

    export_for_serving(bundle_path, onnx=True)  # model.onnx, parity-checked
    bundle = read_bundle(bundle_path)
    fp32 = bundle.read("model.onnx")
    train_files, valid_files, labels = calibration_split(bundle, data)
    config = bundle.config.preprocess
    calibration = load_inputs(calibration_sample(bundle, train_files, CALIBRATION_IMAGES), config)
    valid = load_inputs(valid_files, config)
    fp32_top1 = top1(session_for(fp32), valid)
    notes: list[str] = []
    source = QatSource(bundle, train_files)
    with Quantizer(fp32, calibration, qat=source, weight_bits=weight_bits) as quantizer:
        bits = quantizer.weight_bits
        # Every model of every method, as `ursa export --int8` would judge them had none
        # been all int8 and agreeing (it stops at such a one).
        tried = try_methods(
            quantizer, METHODS, labels, fp32_top1, valid, GateRule(), notes, stop_early=False
        )
    for note in notes:
        print(f"note: {note}", flush=True)
    # All of them and fp32 in alternating rounds, as the export times its choices.
    fp32_ms, *int8_ms = side_by_side_ms([fp32, *(c.model for c, _ in tried)], valid[:1])
    rows: list[dict[str, Any]] = []
    for (candidate, gate), ms in zip(tried, int8_ms, strict=True):
        row = {
            "model": name,
            "method": candidate.method,
            "weight_bits": bits,
            "seconds": round(candidate.seconds, 1),
            "valid_images": gate.images,
            "agreement": gate.agreement,
            "fp32_accuracy": gate.fp32_accuracy,
            "int8_accuracy": gate.int8_accuracy,
            "drop_points": gate.drop_points,
            "drop_interval_points": list(gate.drop_interval_points),
            "fp32_only": gate.fp32_only,
            "int8_only": gate.int8_only,
            "p_value": gate.p_value,
            "accepted": gate.accepted,
            "float_nodes": list(candidate.float_nodes),
            "logit_error": candidate.logit_error,
            "fp32_ms": fp32_ms,
            "int8_ms": ms,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    # What `ursa export --int8` ships had it tried every model: of those that agree
    # enough, the fastest (here by the int8 / fp32 ratio, each measured side by side).
    shipped = pick([gate for _, gate in tried], times=[ms / fp32_ms for ms in int8_ms])
    for index, row in enumerate(rows):
        row["shipped"] = index == shipped
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | method | weight bits | valid images | agreement | fp32 → int8 top-1 "
        "| drop (95 % interval) | fp32-only / int8-only | p | gate | float nodes "
        "| int8 / fp32 ms | build s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["drop_interval_points"]
        gate = ("**shipped**" if row["shipped"] else "accepted") if row["accepted"] else "refused"
        lines.append(
            f"| {row['model']} | {row['method']} | {row['weight_bits']} | {row['valid_images']} | "
            f"{row['agreement']:.1%} | {row['fp32_accuracy']:.1%} → {row['int8_accuracy']:.1%} | "
            f"{row['drop_points']:.2f} ({low:.1f} to {high:.1f}) | "
            f"{row['fp32_only']} / {row['int8_only']} | {row['p_value']:.2g} | {gate} | "
            f"{len(row['float_nodes'])} | {row['int8_ms']:.2f} / {row['fp32_ms']:.2f} "
            f"({row['int8_ms'] / row['fp32_ms']:.2f}×) | {row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("bench-int8"))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--weight-bits", type=int, choices=(7, 8), default=None,
        help="int8 weight bits (default: ursa export's, by this CPU's int8 kernels)",
    )  # fmt: skip
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    import onnxruntime

    from ursa.core.cpu import int8_kernels

    started = os.getloadavg()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    rows = []
    for name in args.models:
        bundle, data = train(name, args.workdir)
        rows += measure(name, bundle, data, args.weight_bits)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, int8 kernels "
        f"{int8_kernels()}, onnxruntime "
        f"{onnxruntime.__version__}; load average at the start {started[0]:.2f}, at the end "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    (args.workdir / "int8.json").write_text(json.dumps({"machine": machine, "rows": rows}))
    print(f"\nmachine: {machine}\n")
    print(table(rows))


if __name__ == "__main__":
    main()
