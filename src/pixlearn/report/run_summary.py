"""The top of a classification report: a plain-language summary, then the final metrics named and
formatted for people (percentages, times, temperatures by class), then the configuration folded away.

metrics.json keeps its machine keys (`val_accuracy`, `lr`, `seconds` of the last epoch); this module
alone turns them into words, so every other reader keeps the exact numbers.

    >>> readable_metrics({"test_accuracy": 1.0, "lr": 4.061e-07, "seconds": 1.913, "epochs_run": 20})
    {'test accuracy': '100.0%', 'learning rate at the last epoch': '4.061e-07', \
'time of the last epoch': '1.9 s', 'epochs run': '20'}
"""

from __future__ import annotations

from typing import Any

from pixlearn.core.storage.classify_records import DataSummary, EpochRow, EvaluationRecord, TrainingMetrics
from pixlearn.core.storage.records import RunConfig
from pixlearn.report import html as h
from pixlearn.report.calibration_part import temperature_text
from pixlearn.report.parts import number

# machine key -> words; percentages are shown as such, times in seconds
NAMES = {
    "epochs_run": "epochs run",
    "epoch": "last epoch",
    "best_epoch": "best epoch (its weights saved)",
    "loss": "training loss at the last epoch",
    "accuracy": "training accuracy at the last epoch",
    "val_loss": "validation loss at the last epoch",
    "val_accuracy": "validation accuracy at the last epoch",
    "lr": "learning rate at the last epoch",
    "lr_found": "learning rate found by --lr auto (each phase's)",
    "seconds": "time of the last epoch",
    "evaluated_on": "final evaluation on",
    "test_accuracy": "test accuracy",
    "test_images": "images in the final evaluation",
    "temperature": "temperature (logits / T)",
    "val_nll_before": "validation NLL before temperature scaling",
    "val_nll_after": "validation NLL after temperature scaling",
    "val_ece_before": "validation ECE before temperature scaling",
    "val_ece_after": "validation ECE after temperature scaling",
    "test_nll_before": "test NLL before temperature scaling",
    "test_nll_after": "test NLL after temperature scaling",
    "test_ece_before": "test ECE before temperature scaling",
    "test_ece_after": "test ECE after temperature scaling",
    "run_seconds": "time of the whole run (decoding to the final evaluation)",
    "calibration_warning": "warning",
}
PERCENT_WORDS = ("accuracy", "balanced", "f1", "coverage")


def readable_metrics(metrics: dict[str, Any], classes: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """metrics.json's pairs (`TrainingMetrics.content()`) with names in words and values formatted for
    reading (the temperatures named by `classes`)."""
    shown = {}
    for key, value in metrics.items():
        name = NAMES.get(key, key.replace("_", " "))
        temperatures = key == "temperature" and isinstance(value, list) and all(number(t) is not None for t in value)
        shown[name] = temperature_text(value, classes) if temperatures and value else _value_text(key, value)
    return shown


def _value_text(key: str, value: Any) -> str:
    x = number(value)
    if x is None or isinstance(value, bool) or not isinstance(value, int | float):
        return str(h.compact(value))
    if key == "lr":
        return f"{x:.4g}" if x >= 1e-3 else f"{x:.3e}"
    if key.endswith("seconds"):
        return f"{x:,.1f} s"
    if any(word in key for word in PERCENT_WORDS) and 0.0 <= x <= 1.0:
        return h.percent(x)
    return h.fmt(value)


def gather_run_summary(
    metrics: TrainingMetrics | None,
    evaluation: EvaluationRecord | None,
    summary: DataSummary | None,
    epochs: list[EpochRow] | None,
) -> list[str]:
    """The sentences a person reads first: accuracy, the worst confusion, skipped files, the run's time
    (metrics.json's run_seconds: the command's wall time up to its last evaluation) and the epochs' own
    (history.csv's seconds); runs written before run_seconds existed say the epochs' alone."""
    metrics = metrics or TrainingMetrics()  # an unfinished run: every figure absent
    sentences = []
    if evaluation:
        where = "Validation" if metrics.evaluated_on == "validation" else "Test"
        right = sum(evaluation.confusion_matrix[i][i] for i in range(len(evaluation.classes)))
        sentences.append(
            f"{where} accuracy {h.percent(evaluation.accuracy)}: {right:,} of {evaluation.images:,} images right."
        )
        sentences.append(_worst_confusion(evaluation))
    if summary is not None:
        skipped = len(summary.skipped)
        sentences.append("No file was skipped." if not skipped else f"{skipped:,} files were skipped (see Data).")
    seconds = sum(r.seconds or 0.0 for r in epochs or [])
    if epochs:
        best = metrics.best_epoch
        restored = f"; the weights of epoch {best} were kept" if best not in (None, len(epochs)) else ""
        if metrics.run_seconds is not None:
            whole = f"{float(metrics.run_seconds):,.1f} s in all, decoding and the final evaluation included"
            counted = f"the epochs {seconds:,.1f} s; {whole}"
        else:
            counted = f"{seconds:,.1f} s, the epochs alone: decoding and the final evaluation not counted"
        sentences.append(f"Training ran {len(epochs)} epochs ({counted}){restored}.")
    return sentences


def _worst_confusion(evaluation: EvaluationRecord) -> str:
    classes, counts = evaluation.classes, evaluation.confusion_matrix
    pairs = [(counts[i][j], i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j]
    count, i, j = max(pairs, default=(0, 0, 0))
    if count == 0:
        return "No image was misclassified."
    share = f"{count:,} of the {sum(counts[i]):,} images of {classes[i]}"
    return f"Most confused: true {classes[i]} predicted as {classes[j]} ({share})."


def render_run(
    sentences: list[str],
    metrics: TrainingMetrics | None,
    config: RunConfig | None,
    classes: list[str] | tuple[str, ...] = (),
) -> str:
    """The Run section's body: the summary, the final metrics in words, the configuration folded."""
    parts = ['<ul class="summary">' + "".join(f"<li>{h.esc(s)}</li>" for s in sentences) + "</ul>"]
    if metrics is not None:
        shown = readable_metrics(metrics.content(), classes)
        parts.append(h.key_values(shown, caption="Final metrics (metrics.json)"))
    else:
        parts.append(h.note("metrics.json is missing: the run did not finish."))
    if config and config.options:
        parts.append(h.details("Configuration (config.json)", h.key_values(config.options)))
    return "\n".join(parts)
