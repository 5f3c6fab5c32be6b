"""What ``ursa export --int8`` says about the models it tried: the report lines and a refusal.

Built from gate results on constructed predictions (as in ``test_int8_gate``), so that each
line is checked against numbers known in advance.
"""

from __future__ import annotations

from typing import Any

from tests.export.test_int8_gate import _predictions
from ursa.export.gate import judge
from ursa.export.quantize import QuantizeReport, refusal, tried_name, tried_summaries


def _entry(method: str, fp32_only: int, float_nodes: int | None, **extra: Any) -> dict[str, Any]:
    """A tried model as the bundle records it: 60 images, ``fp32_only`` of them flipped."""
    entry: dict[str, Any] = {
        "method": method,
        "seconds": 40.0,
        **judge(*_predictions(60, fp32_only=fp32_only, int8_only=0)).to_dict(),
        **extra,
    }
    if float_nodes is not None:
        entry["float_nodes"] = float_nodes
    return entry


#: static refused; a sensitivity pass with three models; qat's one (its all-int8 model).
TRIED = (
    _entry("static", 6, 0, int8_ms=None),
    _entry("sensitivity", 2, 4, int8_ms=None, seconds=12.0),
    _entry("sensitivity", 1, 9, int8_ms=3.5, seconds=20.0),
    _entry("sensitivity", 0, 30, int8_ms=4.25, seconds=38.0),
    _entry("qat", 1, 0, int8_ms=2.125, seconds=175.0),
)


def _report(tried: tuple[dict[str, Any], ...]) -> QuantizeReport:
    gate = judge(*_predictions(60, fp32_only=0, int8_only=0))
    return QuantizeReport(
        method="sensitivity",
        calibration_images=200,
        valid_images=60,
        fp32_accuracy=gate.fp32_accuracy,
        int8_accuracy=gate.int8_accuracy,
        drop_points=0.0,
        max_drop_points=1.0,
        gate=gate,
        float_nodes=("a", "b"),
        fp32_ms=5.0,
        int8_ms=3.0,
        tried=tried,
    )


def test_a_pass_with_several_models_is_summed_up_in_one_line() -> None:
    also = [line for line in _report(TRIED).lines() if line.startswith("also tried: ")]
    assert also == [
        "also tried: static, refused (drop 10.00 points, agreement 90.0%, p = 0.0156; 40 s)",
        "also tried: sensitivity, 3 models with 4-30 nodes in float, 3 accepted (agreement "
        "96.7% to 100.0%, drop 0.00 to 3.33 points; 38 s)",  # the pass up to its last
        "also tried: qat, accepted (drop 1.67 points, agreement 98.3%, p = 0.5, int8 2.12 ms; "
        "175 s)",
    ]


def test_entries_recorded_before_float_nodes_and_times_still_read() -> None:
    legacy = (
        _entry("static", 6, None),
        _entry("sensitivity", 1, None),
        _entry("sensitivity", 0, 7),
    )
    assert (
        tried_name(legacy[0]) == "static"
        and tried_name(legacy[2]) == "sensitivity with 7 nodes in float"
        and tried_name({"method": "qat", "float_nodes": 1}) == "qat with 1 node in float"
    )
    assert tried_summaries(legacy) == [
        "static, refused (drop 10.00 points, agreement 90.0%, p = 0.0156; 40 s)",
        "sensitivity, 2 models with 0-7 nodes in float, 2 accepted (agreement 98.3% to "
        "100.0%, drop 0.00 to 1.67 points; 40 s)",
    ]


def test_a_timed_model_at_zero_ms_still_shows_its_time() -> None:
    (summary,) = tried_summaries([_entry("static", 0, 0, int8_ms=0.0)])
    assert ", int8 0.00 ms; 40 s)" in summary


def test_a_refusal_after_a_pass_of_many_models_names_the_last_and_sums_up_the_rest() -> None:
    refused = [_entry("sensitivity", 6, nodes) for nodes in range(2, 32, 2)]  # 15 models
    last = refused[-1]
    error = refusal(
        tried_name(last),
        judge(*_predictions(60, fp32_only=6, int8_only=0)),
        [TRIED[0], *refused[:-1]],
    )
    message = str(error)
    assert message.startswith("int8 model refused (sensitivity with 30 nodes in float): 60 ")
    assert (
        "Tried before it: static, refused (drop 10.00 points, agreement 90.0%, p = 0.0156; "
        "40 s); sensitivity, 14 models with 2-28 nodes in float, 0 accepted (agreement 90.0%, "
        "drop 10.00 points; 40 s)." in message
    )  # one value where the models' are all equal
    assert message.endswith("the fp32 model.onnx is unaffected") and "\n" not in message
