"""The web export in headless Chromium: cold load to first prediction and predict latency,
beside `ursa bench`'s in-process figures, in one run (the table in docs/web-export.md).

    .venv/bin/python benchmarks/web.py [--bundle FILE.ursa] [--workdir DIR] [--runs 100]

The model: ``--bundle`` (e.g. the one benchmarks/serve.py trains), or else EfficientNet-Lite0
at 224 px with its ImageNet weights and a new, untrained 10-class head. That one is for
timing only (no training happens: the backbone and the head's size are what cost time);
its int8 copy is calibrated on synthetic images with the accuracy check lifted.

For each precision (fp32, int8) and each host (plain: one thread; COOP/COEP headers:
cross-origin isolated, threads) a fresh browser context loads the site from a local
server (no cache) and the page times, on its own clock:
  * cold load: navigation start → the first answer of ursaModel.predict(640×480 JPEG);
  * predict: p50 / p99 over ``--runs`` calls of ursaModel.predict on the same JPEG
    (decode, resize, model, softmax), one after another;
  * decode + preprocess alone: p50 of ``--runs`` calls of ursaModel.tensor.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
LOOP = """async ([b64, runs]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], { type: "image/jpeg" });
  await ursaModel.ready;
  const first = await ursaModel.predict(blob);
  const cold = performance.now();   // milliseconds since navigation started
  const times = [];
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await ursaModel.predict(blob);
    times.push(performance.now() - started);
  }
  const preprocess = [];   // decode + resize + normalise alone, without the model
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    await ursaModel.tensor(blob);
    preprocess.push(performance.now() - started);
  }
  return { cold, times, preprocess, label: first.label, info: ursaModel.info };
}"""


def untrained_lite0(workdir: Path) -> Path:
    """EfficientNet-Lite0 (ImageNet weights) with an untrained 10-class head, exported to
    ONNX and int8 (calibrated on synthetic images, accuracy check lifted): timing only."""
    from ursa.data.core import ImageData
    from ursa.export.deploy import export_for_serving
    from ursa.train import Learner, SilentLogger

    data_root = workdir / "synthetic"
    rng = np.random.default_rng(0)
    for index in range(10):
        folder = data_root / f"class{index}"
        folder.mkdir(parents=True, exist_ok=True)
        for count in range(8):
            pixels = rng.normal(30 + 20 * index, 40, size=(240, 320, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{count}.jpg")
    data = ImageData.from_folder(data_root, size=224, batch_size=16, num_workers=0, seed=0)
    learner = Learner(data, arch="efficientnet_lite0", seed=0, logger=SilentLogger())
    bundle = learner.export(workdir / "lite0-untrained.ursa")  # no fit: timing only
    export_for_serving(
        bundle, onnx=True, int8=True, calibrate=data_root, calibration_images=32, max_drop=100.0
    )
    return bundle


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def browser_rows(bundle: Path, workdir: Path, runs: int, jpeg: bytes) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    from ursa.core.bundle import read_bundle
    from ursa.export.web import export_web, serve_site

    precisions = ["fp32"] + (["int8"] if "model.int8.onnx" in read_bundle(bundle).members else [])
    rows = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-background-networking"],
        )
        try:
            for precision in precisions:
                site = workdir / f"site-{precision}"
                if not site.exists():
                    export_web(bundle, site, precision=precision)
                for isolated in (False, True):
                    with serve_site(site, isolated=isolated) as url:
                        context = browser.new_context()  # empty cache: a cold load
                        page = context.new_page()
                        page.goto(url + "/")
                        result = page.evaluate(LOOP, [base64.b64encode(jpeg).decode(), runs])
                        context.close()
                    info = result["info"]
                    rows.append({
                        "precision": precision,
                        "threads": info["threads"],
                        "isolated": info["cross_origin_isolated"],
                        "cold_ms": result["cold"],
                        "load_ms": info["load_ms"],
                        "p50_ms": percentile(result["times"], 50),
                        "p99_ms": percentile(result["times"], 99),
                        "preprocess_p50_ms": percentile(result["preprocess"], 50),
                        "runs": runs,
                    })  # fmt: skip
            version = browser.version
        finally:
            browser.close()
    for row in rows:
        row["chromium"] = version
    return rows


def site_sizes(workdir: Path) -> list[str]:
    lines = []
    for site in sorted(workdir.glob("site-*")):
        files = [p for p in site.rglob("*") if p.is_file()]
        total = sum(p.stat().st_size for p in files)
        packed = sum(len(gzip.compress(p.read_bytes(), 6)) for p in files)
        model = next(p for p in (site / "model").glob("*.onnx"))
        lines.append(
            f"{site.name}: {total / 1e6:.1f} MB ({packed / 1e6:.1f} MB gzipped), of which "
            f"{model.name} {model.stat().st_size / 1e6:.1f} MB"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="the model (default: untrained-head Lite0)")
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ursa-web-bench"
    )
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    bundle = args.bundle or args.workdir / "lite0-untrained.ursa"
    if not bundle.exists():
        bundle = untrained_lite0(args.workdir)

    from ursa.serve.bench import synthetic_jpeg

    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as stream:
        names = [line.split(":", 1)[1].strip() for line in stream if line.startswith("model name")]
    print(f"machine: {names[0] if names else cpu}, {os.cpu_count()} cores; "
          f"load average before {os.getloadavg()}")  # fmt: skip
    jpeg = synthetic_jpeg()  # the 640×480 JPEG `ursa bench` sends
    rows = browser_rows(bundle, args.workdir, args.runs, jpeg)
    print(f"Chromium {rows[0]['chromium']}, {args.runs} predictions per row")
    print("| precision | host | threads | cold load → first prediction | model load | "
          "predict p50 | predict p99 | of which decode + preprocess, p50 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        host = "COOP/COEP (isolated)" if row["isolated"] else "plain"
        cells = [row["precision"], host, str(row["threads"]), f"{row['cold_ms']:.0f} ms",
                 f"{row['load_ms']:.0f} ms", f"{row['p50_ms']:.2f} ms",
                 f"{row['p99_ms']:.2f} ms", f"{row['preprocess_p50_ms']:.2f} ms"]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    print("\n`ursa bench` in-process (same JPEG, same run):")
    sys.stdout.flush()
    subprocess.run(
        [sys.executable, "-m", "ursa", "bench", str(bundle), "--no-http",
         "--requests", str(args.runs)],
        check=True,
    )  # fmt: skip
    print("\n".join(site_sizes(args.workdir)))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
