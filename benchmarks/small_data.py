"""Small data: ursa's defaults against a linear probe and fastai, 5 to 300 images a class.

    .venv/bin/python benchmarks/small_data.py [--datasets fashion digits] [--k 5 10 25 100 300]
        [--seeds 0 1 2] [--methods ursa probe fastai] [--size 224] [--workdir bench-small]
        [--fastai-python .venv-fastai/bin/python]

    .venv/bin/python benchmarks/small_data.py --scale [--size 96]   # 60,000 images

For each dataset, k and seed, one folder ``train/<class>/`` (k images of each class, drawn
with the seed from the training pool) and ``valid/<class>/`` (a fixed set, the same for
every k and seed: 50 images a class, 500 in all), read by all three methods:

* ``ursa``: ``ImageData.from_folder(folder, size=SIZE, seed=seed)``, ``Learner(data)``,
  ``fine_tune()``: every default (batch size, epochs, rates, head fit, precision).
* ``probe``: scikit-learn's ``LogisticRegression`` (its defaults, ``max_iter=1000``) on the
  pooled features of the same frozen EfficientNet-Lite0 body, one validation-transform view
  of each image: the "linear probe" a practitioner would try first.
* ``fastai``: fastai 2.8's ``vision_learner`` + ``fine_tune(3)`` (its default base_lr 2e-3)
  with the same backbone and ImageNet weights, the course's bears transforms
  (``RandomResizedCrop(SIZE, min_scale=0.5)`` + ``aug_transforms()``), in its own virtual
  environment (see ``benchmarks/vs_fastai.py``). One change from its defaults: the batch
  size is ursa's automatic one, because fastai's 64 with ``drop_last`` gives no training
  step at all on a set of fewer than 64 images (and one or two on a few hundred).

Each run is a fresh process; its wall time covers building the data and the model,
training and the final validation. The error is measured on a third set, ``test/`` (50
images a class, 500 in all), that no method sees before: ursa chooses its weights on
``valid/`` (the head fit or the average with the last epoch), so its validation error
would flatter it.
Results are appended to ``WORKDIR/results.jsonl`` as they finish (a rerun skips those
already there) and summarised as a Markdown table:
error rate mean ± standard deviation over the seeds, and mean seconds.

Data: Debian's ``dataset-fashion-mnist`` (28 px PNGs; validation from its test split) and
scikit-learn's digits (8 px scans drawn at 32 px as ``ursa demo`` does; 1,797 images, so
k is at most 74 a class there after the 1,000 held-out validation and test images).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
FASHION_NAMES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                 "bag", "boot")  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent
VALID_PER_CLASS = 50
METHODS = ("ursa", "probe", "fastai")
DIGITS_MAX_K = 74  # the rarest digit has 174 images; 100 of each are held out


def load_fashion() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST's training images and labels, then its test split's (uint8 gray)."""
    if not FASHION_MNIST.exists():
        sys.exit("needs Debian's dataset-fashion-mnist: apt-get install dataset-fashion-mnist")

    def read(name: str, offset: int) -> np.ndarray:
        with gzip.open(FASHION_MNIST / name) as stream:
            return np.frombuffer(stream.read(), np.uint8, offset=offset)

    return (
        read("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28),
        read("train-labels-idx1-ubyte.gz", 8),
        read("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28),
        read("t10k-labels-idx1-ubyte.gz", 8),
    )


def held_out(labels: np.ndarray) -> np.ndarray:
    """Indices of the held-out images: the first 100 of each class, 50 to validate and 50
    to test (in the small-data runs; the 60,000-image run validates on all 1,000)."""
    return np.concatenate([np.flatnonzero(labels == c)[: 2 * VALID_PER_CLASS] for c in range(10)])


def load_pool(dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(training pool, its labels, held-out images, their labels, class names), uint8 gray.
    The held-out images are 100 a class: the first 50 of each class validate, the other 50
    are the test set."""
    if dataset == "fashion":
        train, train_labels, test, test_labels = load_fashion()
        held = held_out(test_labels)
        return train, train_labels, test[held], test_labels[held], list(FASHION_NAMES)
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (255 - digits.images * (255 / 16)).clip(0, 255).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    held = held_out(labels)
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return images[rest], labels[rest], images[held], labels[held], [str(d) for d in range(10)]


def make_folder(root: Path, dataset: str, k: int, seed: int) -> Path:
    """``root/train/<class>/`` with k images a class drawn with ``seed``, ``root/valid/``
    the fixed validation set, ``root/test/`` the fixed test set (never seen by training,
    model selection or weight decay choice; every method's error is measured there).
    Written once; a finished folder has a ``.done`` marker."""
    from PIL import Image

    if (root / ".done").exists():
        return root
    train, train_labels, valid, valid_labels, names = load_pool(dataset)
    rng = np.random.default_rng(seed)
    side = 28 if dataset == "fashion" else 32
    for split in ("train", "valid", "test"):
        images, labels = (train, train_labels) if split == "train" else (valid, valid_labels)
        for index, name in enumerate(names):
            members = np.flatnonzero(labels == index)
            if split == "train":
                if len(members) < k:
                    sys.exit(f"{dataset} has {len(members)} training images of {name}, not {k}")
                members = rng.choice(members, size=k, replace=False)
            else:
                half = (
                    slice(0, VALID_PER_CLASS) if split == "valid" else slice(VALID_PER_CLASS, None)
                )
                members = members[half]
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for position in members:
                picture = Image.fromarray(images[position], mode="L")
                if picture.size != (side, side):
                    picture = picture.resize((side, side), Image.Resampling.BICUBIC)
                picture.save(folder / f"{position:05d}.png")
    (root / ".done").touch()
    return root


def test_files(data: Path) -> tuple[list[Path], list[str]]:
    files = sorted((data / "test").rglob("*.png"))
    return files, [f.parent.name for f in files]


def test_error(predicted: list[str], truth: list[str]) -> float:
    return sum(p != t for p, t in zip(predicted, truth, strict=True)) / len(truth)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ursa(data: Path, size: int, seed: int) -> dict[str, float]:
    import ursa
    from ursa.train import SilentLogger

    started = time.perf_counter()
    images = ursa.ImageData.from_folder(data, size=size, seed=seed)
    learner = ursa.Learner(images, logger=SilentLogger())
    learner.fine_tune()
    valid_error = learner.validate().error_rate
    seconds = time.perf_counter() - started
    files, truth = test_files(data)
    predicted = [p.label for p in learner.predict_batch(files, batch_size=64)]
    unfrozen = [r for r in learner.history if r.phase == "unfrozen"]
    return {
        "seconds": seconds,
        "error_rate": test_error(predicted, truth),
        "valid_error": valid_error,
        "head_error": learner.history[0].error_rate,
        "batch_size": images.batch_size,
        "epochs": len(unfrozen),
        "precision": learner.options.precision,
        "peak_mb": peak_mb(),
    }


def run_probe(data: Path, size: int, seed: int) -> dict[str, float]:
    import torch
    from sklearn.linear_model import LogisticRegression

    import ursa
    from ursa.core.items import Item
    from ursa.train.head_fit import pooled_features

    started = time.perf_counter()
    images = ursa.ImageData.from_folder(data, size=size, seed=seed, augment="none")
    learner = ursa.Learner(images, logger=ursa.train.SilentLogger(), precision="fp32")
    model = learner.model.eval()

    def features(items: list) -> tuple[np.ndarray, np.ndarray]:
        dataset = images.dataset(items, learner.preprocess, training=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=64)
        rows, labels = [], []
        with torch.inference_mode():
            for batch, targets in loader:
                batch = batch.contiguous(memory_format=torch.channels_last)
                rows.append(pooled_features(model, batch).numpy())
                labels.append(targets.numpy())
        return np.concatenate(rows), np.concatenate(labels)

    train_x, train_y = features(images.train_items)
    valid_x, valid_y = features(images.valid_items)
    probe = LogisticRegression(max_iter=1000).fit(train_x, train_y)
    valid_error = float((probe.predict(valid_x) != valid_y).mean())
    seconds = time.perf_counter() - started
    files, truth = test_files(data)
    test_items = [Item(path, label) for path, label in zip(files, truth, strict=True)]
    test_x, test_y = features(test_items)
    error = float((probe.predict(test_x) != test_y).mean())
    return {"seconds": seconds, "error_rate": error, "valid_error": valid_error,
            "peak_mb": peak_mb()}  # fmt: skip


def run_fastai(data: Path, size: int, seed: int) -> dict[str, float]:
    from vs_fastai import fastai_learner  # this folder: the one fastai set-up both share

    from ursa.data.core import auto_batch_size

    started = time.perf_counter()
    train_images = sum(1 for _ in (data / "train").rglob("*.png"))
    learner = fastai_learner(
        data, size=size, batch_size=auto_batch_size(train_images), min_scale=0.5, seed=seed
    )
    with learner.no_bar(), learner.no_logging():
        learner.fine_tune(3)
        _, valid_error = learner.validate()
        seconds = time.perf_counter() - started
        files, truth = test_files(data)
        predictions, _ = learner.get_preds(dl=learner.dls.test_dl(files))
    vocab = list(learner.dls.vocab)
    predicted = [vocab[i] for i in predictions.argmax(dim=1).tolist()]
    return {"seconds": seconds, "error_rate": test_error(predicted, truth),
            "valid_error": float(valid_error), "peak_mb": peak_mb()}  # fmt: skip


RUNNERS = {"ursa": run_ursa, "probe": run_probe, "fastai": run_fastai}


def in_subprocess(python: str, method: str, data: Path, size: int, seed: int) -> dict[str, float]:
    """Run one method in a fresh interpreter; its last stdout line is JSON."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    command = [python, __file__, "--run", method, "--data", str(data), "--size", str(size),
               "--seeds", str(seed)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    if result.returncode != 0:
        sys.exit(f"{method} on {data} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def summarise(rows: list[dict]) -> str:
    """The Markdown table: error mean ± sd over seeds and mean seconds, per dataset, k, method."""
    header = ("data", "k a class", "images", "ursa error", "probe error", "fastai error",
              "ursa s", "probe s", "fastai s", "ursa / fastai time", "seeds")  # fmt: skip
    table = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    keys = sorted({(r["dataset"], r["k"]) for r in rows})
    for dataset, k in keys:
        cells, seconds = {}, {}
        seeds = set()
        for method in METHODS:
            found = [r for r in rows if (r["dataset"], r["k"], r["method"]) == (dataset, k, method)]
            errors = [100 * r["error_rate"] for r in found]
            seeds |= {r["seed"] for r in found}
            if not errors:
                cells[method], seconds[method] = "–", None
                continue
            spread = statistics.stdev(errors) if len(errors) > 1 else 0.0
            cells[method] = f"{statistics.mean(errors):.1f} ± {spread:.1f} %"
            seconds[method] = statistics.mean(r["seconds"] for r in found)
        ratio = (
            f"{seconds['ursa'] / seconds['fastai']:.2f}"
            if seconds.get("ursa") and seconds.get("fastai")
            else "–"
        )
        shown = {m: "–" if s is None else f"{s:.0f}" for m, s in seconds.items()}
        table.append(
            f"| {dataset} | {k} | {10 * k} | {cells['ursa']} | {cells['probe']} | "
            f"{cells['fastai']} | {shown['ursa']} | {shown['probe']} | {shown['fastai']} | "
            f"{ratio} | {len(seeds)} |"
        )
    return "\n".join(table)


def run_scale(workdir: Path, size: int) -> None:
    """The whole Fashion-MNIST training split (60,000 images) with every default, validated
    on 1,000 held-out images (100 a class) and tested on the other 9,000 of the test split:
    images/s, seconds per epoch, peak memory, validation and test error. Also the test error
    of the other candidates ``fine_tune`` chose among, which it never sees: the head fit,
    and the average when the last epoch was kept (from the average's weights the last
    epoch's cannot be rebuilt)."""
    from PIL import Image

    root = workdir / "fashion-60k"
    if not (root / ".done").exists():
        train, labels, test, test_labels = load_fashion()
        held = held_out(test_labels)
        rest = np.setdiff1d(np.arange(len(test_labels)), held)
        splits = (
            ("train", train, labels, np.arange(len(labels))),
            ("valid", test, test_labels, held),
            ("test", test, test_labels, rest),
        )
        for split, images, targets, members in splits:
            for position in members:
                folder = root / split / FASHION_NAMES[targets[position]]
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[position], mode="L").save(folder / f"{position:05d}.png")
        (root / ".done").touch()
    import ursa
    from ursa.train import SilentLogger
    from ursa.train.learner import average_weights

    started = time.perf_counter()
    data = ursa.ImageData.from_folder(root, size=size)
    learner = ursa.Learner(data, logger=SilentLogger())
    learner.fine_tune()
    seconds = time.perf_counter() - started
    for record in learner.history:
        rate = len(data.train_items) / record.seconds if record.phase == "unfrozen" else None
        speed = f", {rate:.0f} training images/s" if rate else ""
        print(f"{record.phase:>9} epoch {record.epoch}: {record.seconds:.0f} s{speed}, "
              f"validation error {100 * record.error_rate:.2f} %")  # fmt: skip
    print(f"60,000 images at {size} px: {seconds:.0f} s in all, batch {data.batch_size}, "
          f"{learner.options.precision} training steps, kept {learner.kept}, validation error "
          f"{100 * learner.validate().error_rate:.2f} % (fp32), peak memory {peak_mb():.0f} "
          f"MB; load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    files, truth = test_files(root)

    def tested(name: str) -> None:
        predicted = [p.label for p in learner.predict_batch(files, batch_size=64)]
        print(f"test error ({len(files)} images, fp32), {name}: "
              f"{100 * test_error(predicted, truth):.2f} %", flush=True)  # fmt: skip

    kept = learner.kept or "the last epoch (no validation images)"
    tested(f"kept: {kept}")
    # The head fit's weights stay in the fit's keep-best tracker (a benchmark may look);
    # from the last epoch's weights the average can be rebuilt, from the average's the
    # last epoch's cannot.
    head = learner._fit_tracker.state if learner._fit_tracker is not None else None
    if head is not None and kept.startswith("epoch"):
        last = {k: v.detach().clone() for k, v in learner.model.state_dict().items()}
        learner.model.load_state_dict(average_weights(head, last))
        tested("the average of the head fit and the last epoch")
    if head is not None and kept != "the head fit":
        learner.model.load_state_dict(head)
        tested("the head fit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["fashion", "digits"])
    parser.add_argument("--k", nargs="+", type=int, default=[5, 10, 25, 100, 300])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--workdir", type=Path, default=Path("bench-small"))
    parser.add_argument("--fastai-python", default=str(ROOT / ".venv-fastai" / "bin" / "python"))
    parser.add_argument("--scale", action="store_true", help="the 60,000-image run instead")
    parser.add_argument("--run", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.run is not None:
        result = RUNNERS[arguments.run](arguments.data, arguments.size, arguments.seeds[0])
        print(json.dumps(result))
        return
    if arguments.scale:
        run_scale(arguments.workdir, arguments.size)
        return
    if "fastai" in arguments.methods and not Path(arguments.fastai_python).exists():
        sys.exit(f"{arguments.fastai_python} not found: create the fastai venv (vs_fastai.py)")
    arguments.workdir.mkdir(parents=True, exist_ok=True)
    results = arguments.workdir / "results.jsonl"
    rows = (
        [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    )
    print(f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    for dataset in arguments.datasets:
        for k in arguments.k:
            if dataset == "digits" and k > DIGITS_MAX_K:
                print(f"digits: k={k} skipped ({DIGITS_MAX_K} training images a class at most)")
                continue
            for seed in arguments.seeds:
                folder = make_folder(
                    arguments.workdir / f"{dataset}-k{k}-s{seed}", dataset, k, seed
                )
                for method in arguments.methods:
                    key = (dataset, k, seed, method, arguments.size)
                    if any((r["dataset"], r["k"], r["seed"], r["method"], r["size"]) == key
                           for r in rows):  # fmt: skip
                        continue
                    python = arguments.fastai_python if method == "fastai" else sys.executable
                    load = os.getloadavg()[0]
                    result = in_subprocess(python, method, folder, arguments.size, seed)
                    row = {"dataset": dataset, "k": k, "seed": seed, "method": method,
                           "size": arguments.size, "load_before": load, **result}  # fmt: skip
                    rows.append(row)
                    with results.open("a") as stream:
                        stream.write(json.dumps(row) + "\n")
                    print(f"{dataset} k={k} seed={seed} {method:>6}: error "
                          f"{100 * result['error_rate']:5.1f} %, {result['seconds']:6.1f} s "
                          f"(load {load:.1f})", flush=True)  # fmt: skip
    print(summarise([r for r in rows if r["size"] == arguments.size]))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
