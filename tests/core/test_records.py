"""The typed records of a run's files (core.storage.records): each file a run, a fit, a comparison or a
check writes reads back as its record and writes back the same; files of earlier versions load with the
records' defaults; unknown keys are kept; a wrong type, a newer format or an oversized file is a RunError
naming the file. And two rules on the source: JSON is read (`read_json`) only through the records, the
model spec and the checkpoints, and the report and the command line read no dict with `.get("key")`.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from pathlib import Path

import numpy as np
import pytest

from pixlearn.classify.audit.inspection import CheckConfig, check
from pixlearn.classify.config import TrainConfig
from pixlearn.classify.training.loop import train
from pixlearn.core.errors import RunError
from pixlearn.core.storage import rundir
from pixlearn.core.storage.classify_records import (
    CheckSummary,
    DataSummary,
    EpochRow,
    EvaluationRecord,
    TrainingMetrics,
)
from pixlearn.core.storage.field_records import CompareMetrics, CompareRow, FitMetrics, ReadableWeights, StepRow
from pixlearn.core.storage.records import Record, RunConfig
from pixlearn.field.comparison import compare
from pixlearn.field.config import CompareConfig, FitConfig
from pixlearn.field.fit import fit_image
from tests.corpus import make_class_folders
from tests.paths import FIXTURES, ROOT

LEGACY = FIXTURES / "legacy-runs"
SOURCE = ROOT / "src" / "pixlearn"

CLASSIFY = {"metrics.json": TrainingMetrics, "data_summary.json": DataSummary, "evaluation.json": EvaluationRecord}
FIT = {"metrics.json": FitMetrics, "weights.json": ReadableWeights}
COMPARE = {"metrics.json": CompareMetrics}


def text_of(data: object) -> str:
    """JSON data as comparable text, as the writer writes it (a reliability bin's NaN, read back from
    the null written for it, as null again)."""
    return json.dumps(json.loads(rundir.strict_json(data)), sort_keys=True)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A training run (calibrated, abstaining, early stopping), a held-out fit, a comparison and a check,
    all written by this version."""
    root = tmp_path_factory.mktemp("records")
    make_class_folders(root / "data" / "train", per_class=8)
    make_class_folders(root / "data" / "test", per_class=3)
    config = TrainConfig(
        model="airnet-small", size=16, color="grayscale", epochs=2, batch_size=4, device="cpu",
        calibrate=True, abstain_below=0.6, early_stopping=2,
    )  # fmt: skip
    train(root / "data", root / "run", config)
    image = (np.indices((12, 10)).sum(0) * 10).astype(np.uint8)
    fit_image(image, root / "fit", FitConfig(model="seed-small", steps=5, heldout=True, device="cpu"))
    fit = FitConfig(model="seed-linear", steps=3)
    compare(image, root / "compare", CompareConfig(models=["seed-linear", "seed-small"], fit=fit))
    check(root / "data", root / "check", CheckConfig(embeddings="pixels", size=32, folds=2))
    return root


def test_every_file_written_reads_back_as_its_record_and_writes_the_same(written: Path, tmp_path: Path) -> None:
    cases = [
        *[(written / "run" / name, record) for name, record in CLASSIFY.items()],
        *[(written / "fit" / name, record) for name, record in FIT.items()],
        *[(written / "compare" / name, record) for name, record in COMPARE.items()],
        (written / "check" / "check.json", CheckSummary),
        *[(written / run / "config.json", RunConfig) for run in ("run", "fit", "compare")],
    ]
    for path, record in cases:
        read = record.read(path)
        assert read.extra == {}, path  # every key this version writes is a field of its record
        assert text_of(read.to_dict()) == text_of(json.loads(path.read_text(encoding="utf-8"))), path
        again = record.read(read.write(tmp_path / f"{path.parent.name}-{path.name}"))
        assert text_of(again.to_dict()) == text_of(read.to_dict()), path
    rows = CompareRow.read_list(written / "compare")
    compared = json.loads((written / "compare" / "compare.json").read_text())
    assert text_of([r.content() for r in rows]) == text_of(compared)
    for run, row in (("run", EpochRow), ("fit", StepRow), ("compare/models/seed-small", StepRow)):
        history = (written / run / "history.csv").read_text(encoding="utf-8")
        copy = row.write_rows(tmp_path / "history.csv", row.read_rows(written / run))
        assert copy.read_text(encoding="utf-8") == history, run
    # every JSON file of each directory is read through a record (weights.json: a fit's)
    known = {"model.json", "checkpoint.json", *CLASSIFY, *FIT, "config.json", "check.json", "compare.json"}
    for folder in ("run", "fit", "compare", "check"):
        assert {p.name for p in (written / folder).glob("*.json")} <= known, folder


def test_the_writers_add_only_the_format_to_what_they_wrote_before(written: Path) -> None:
    """A record may add a key, never rename or drop one: the keys of the files the earlier version
    wrote (tests/fixtures/legacy-runs) are all still written, with `format` added."""
    pairs = [(LEGACY / "classify-calibrated" / name, written / "run" / name) for name in CLASSIFY]
    pairs.append((LEGACY / "check" / "check.json", written / "check" / "check.json"))
    pairs.append((LEGACY / "compare" / "metrics.json", written / "compare" / "metrics.json"))
    for before, now in pairs:
        old, new = json.loads(before.read_text()), json.loads(now.read_text())
        assert set(old) <= set(new), (now, set(old) - set(new))
        assert new["format"].startswith("pixlearn-"), now
    with open(written / "compare" / "compare.csv", encoding="utf-8") as f:
        assert f.readline().startswith("model,params,")
    assert (written / "check" / "duplicates.csv").read_text().startswith("path_a,path_b,")


@pytest.mark.parametrize("kind", ["classify", "classify-calibrated", "field", "compare", "check"])
def test_the_files_of_earlier_versions_load_with_the_records_defaults(kind: str) -> None:
    run = LEGACY / kind
    records = {"classify": CLASSIFY, "classify-calibrated": CLASSIFY, "field": FIT, "compare": COMPARE}
    for name, record in records.get(kind, {"check.json": CheckSummary}).items():
        if (run / name).exists():
            assert record.read(run).extra == {}, name
    if kind == "classify":  # 0.1: before evaluated_on, run_seconds, the decision rule and calibration
        metrics, evaluation = TrainingMetrics.read(run), EvaluationRecord.read(run)
        assert (metrics.evaluated_on, metrics.run_seconds, metrics.best_epoch) == ("test", None, None)
        assert evaluation.decision == "the most probable class" and evaluation.calibration is None
        assert evaluation.balanced_accuracy is None and evaluation.abstention is None
        assert DataSummary.read(run).validation is None and DataSummary.read(run).input == ()
        assert [row.epoch for row in EpochRow.read_rows(run)] == [1]
    if kind == "classify-calibrated":
        evaluation = EvaluationRecord.read(run)
        assert evaluation.abstention is not None and evaluation.temperature_effect is not None
        assert TrainingMetrics.read(run).validation_effect() is not None
    if kind == "field":
        assert FitMetrics.read(run).phases is None and StepRow.read_rows(run)[-1].test_psnr is None
    if kind == "compare":
        rows = CompareRow.read_list(run)
        assert [r.model for r in rows] == list(CompareMetrics.read(run).models) and rows[0].psnr is not None
    if kind == "check":
        summary = CheckSummary.read(run)
        assert summary.duplicates.exact >= 1 and summary.balance.total


def test_unknown_keys_are_kept_and_written_back(tmp_path: Path) -> None:
    """A newer run read by this version (and this version's run read by an older one) loses nothing."""
    evaluation = json.loads((LEGACY / "classify-calibrated" / "evaluation.json").read_text())
    evaluation["auroc"] = 0.91
    evaluation["per_class"][0]["auroc"] = 0.9
    record = EvaluationRecord.from_dict(evaluation)
    assert record.extra == {"auroc": 0.91} and record.per_class[0].extra == {"auroc": 0.9}
    back = json.loads((record.write(tmp_path / "evaluation.json")).read_text())
    assert back["auroc"] == 0.91 and back["per_class"][0]["auroc"] == 0.9
    (tmp_path / "history.csv").write_text("epoch,loss,grad_norm\n1,0.5,3.25\n")
    rows = EpochRow.read_rows(tmp_path)
    assert rows[0].extra == {"grad_norm": "3.25"}
    EpochRow.write_rows(tmp_path / "history.csv", rows)
    assert (tmp_path / "history.csv").read_text().splitlines()[0].endswith(",phase,grad_norm")


def test_a_newer_format_or_another_records_file_is_refused(tmp_path: Path) -> None:
    metrics = {**json.loads((LEGACY / "field" / "metrics.json").read_text()), "format": "pixlearn-fit-metrics/9"}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(RunError, match=r"metrics.json: written by a newer pixlearn \(pixlearn-fit-metrics version 9"):
        FitMetrics.read(tmp_path)
    FitMetrics.from_dict({**metrics, "format": "pixlearn-fit-metrics/1"}).write(tmp_path / "metrics.json")
    with pytest.raises(RunError, match="metrics.json: not a pixlearn-training-metrics file"):
        TrainingMetrics.read(tmp_path)


def test_a_wrong_type_is_a_run_error_naming_the_file_and_the_key(tmp_path: Path) -> None:
    evaluation = json.loads((LEGACY / "classify" / "evaluation.json").read_text())
    evaluation["per_class"][1]["precision"] = "high"
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    with pytest.raises(RunError, match=r"evaluation.json: per_class\[1\].precision must be a number, got 'high'"):
        EvaluationRecord.read(tmp_path)
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.5\n2,lower\n")
    with pytest.raises(RunError, match="history.csv: line 3, column loss must be a number or null, got 'lower'"):
        EpochRow.read_rows(tmp_path)
    (tmp_path / "data_summary.json").write_text(json.dumps({"images": {"train": 3}}))
    with pytest.raises(RunError, match="data_summary.json: classes is missing"):
        DataSummary.read(tmp_path)
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(RunError, match="metrics.json: expected a JSON object"):
        TrainingMetrics.read(tmp_path)


def test_a_file_over_its_records_limit_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5, "note": "x" * 200}))
    monkeypatch.setattr(TrainingMetrics, "MAX_BYTES", 100)
    with pytest.raises(RunError, match=r"metrics.json: 2\d\d bytes, over the limit of 100 bytes"):
        TrainingMetrics.read(tmp_path)


# ---------------------------------------------------------------------------------- rules on the source

# The modules that may call rundir.read_json: the records, the model spec's files, the checkpoints.
READ_JSON_MODULES = {
    "core/storage/records.py",
    "core/storage/classify_records.py",
    "core/storage/field_records.py",
    "core/storage/spec.py",
    "core/storage/weights.py",
    "core/storage/checkpoints.py",
}
MAX_LITERAL_GETS = 5  # `.get("key")` left in report/ and cli/, each with a comment saying why


def read_json_uses(text: str) -> list[int]:
    """Lines where `read_json` is called (by any name of its module) or imported by name."""
    lines = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "read_json":
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and any(a.name == "read_json" for a in node.names):
            lines.append(node.lineno)
    return lines


def literal_gets(text: str) -> list[tuple[int, bool]]:
    """(line, whether a comment is on it) of every `x.get("literal", ...)` call."""
    comments = {t.start[0] for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type == tokenize.COMMENT}
    found = []
    for node in ast.walk(ast.parse(text)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.lineno in comments))
    return found


def read_json_outside(package: Path) -> dict[str, list[int]]:
    uses = {str(p.relative_to(package)): read_json_uses(p.read_text(encoding="utf-8")) for p in package.rglob("*.py")}
    return {name: lines for name, lines in sorted(uses.items()) if lines and name not in READ_JSON_MODULES}


def gets_in_report_and_cli(package: Path) -> dict[str, list[tuple[int, bool]]]:
    files = [*sorted((package / "report").rglob("*.py")), *sorted((package / "cli").rglob("*.py"))]
    found = {str(p.relative_to(package)): literal_gets(p.read_text(encoding="utf-8")) for p in files}
    return {name: gets for name, gets in found.items() if gets}


def test_json_is_read_only_through_the_records_the_spec_and_the_checkpoints() -> None:
    assert read_json_outside(SOURCE) == {}


def test_the_report_and_the_command_line_read_records_not_dicts() -> None:
    found = gets_in_report_and_cli(SOURCE)
    count = sum(len(gets) for gets in found.values())
    assert count <= MAX_LITERAL_GETS, found
    unexplained = {name: [line for line, commented in gets if not commented] for name, gets in found.items()}
    assert all(not lines for lines in unexplained.values()), f"a .get without a comment saying why: {unexplained}"


def test_the_source_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    """Each checker finds a use planted in a copy of a module (the real tree is checked above)."""
    planted = tmp_path / "pixlearn"
    (planted / "report").mkdir(parents=True)
    (planted / "cli").mkdir()
    (planted / "report" / "page.py").write_text(
        "from pixlearn.core.storage.rundir import read_json\n"
        "def f(p, rundir):\n"
        "    data = rundir.read_json(p)\n"
        "    return data.get('psnr'), data.get('ssim', 0)  # older runs have none\n"
    )
    (planted / "cli" / "verbs.py").write_text("def g(m):\n    return m.get(key), m['x'], m.get('seconds')\n")
    assert read_json_outside(planted) == {"report/page.py": [1, 3]}
    assert gets_in_report_and_cli(planted) == {
        "cli/verbs.py": [(2, False)],
        "report/page.py": [(4, True), (4, True)],
    }


def test_every_record_is_a_frozen_dataclass_whose_fields_have_types() -> None:
    import dataclasses

    def every(record: type) -> set[type]:
        return {record}.union(*(every(sub) for sub in record.__subclasses__()))

    for record in every(Record):
        assert dataclasses.is_dataclass(record) and record.__dataclass_params__.frozen, record
