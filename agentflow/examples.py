"""Labelled example files: CSV (configurable columns) or JSONL, one example per row."""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from agentflow.errors import DataError

__all__ = ["Example", "load_examples", "stratified_split", "write_examples"]


class Example(BaseModel):
    """One labelled text."""

    model_config = ConfigDict(frozen=True)

    text: str
    """The input the model sees."""
    label: str
    """The expected decision."""
    group: str | None = None
    """The family the example belongs to (a run's goal, a tool's domain), when known: the
    far test is fitted with whole families held out (:meth:`EncoderHead.train`)."""


def load_examples(
    path: Path | str, text_col: str = "text", label_col: str = "label"
) -> list[Example]:
    """Read examples from ``.csv`` or ``.jsonl``; every row must have both columns.

    Falls back to a ``category`` column for the label when ``label`` is absent, which is
    how BANKING77 and similar intent sets are published.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"examples file {path} does not exist", hint="check the path")
    rows: list[dict[str, object]]
    try:
        if path.suffix.lower() in {".jsonl", ".ndjson"}:
            with path.open(encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
        else:
            with path.open(encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
    except (json.JSONDecodeError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot parse {path}: {exc}", hint="use CSV with a header or JSONL"
        ) from exc
    if not rows:
        raise DataError(f"{path} has no rows", hint="add labelled examples")
    if label_col == "label" and "label" not in rows[0] and "category" in rows[0]:
        label_col = "category"
    examples = []
    for i, row in enumerate(rows, start=1):
        if text_col not in row or label_col not in row:
            raise DataError(
                f"{path} row {i} lacks column {text_col!r} or {label_col!r} (has {sorted(row)})",
                hint="pass --text-col / --label-col with the file's column names",
            )
        text, label = str(row[text_col]).strip(), str(row[label_col]).strip()
        if text and label:
            examples.append(Example(text=text, label=label))
    return examples


def stratified_split(
    examples: Sequence[Example], test_size: float = 0.2, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """Split per label so every label keeps its share in both parts (deterministic)."""
    if not 0.0 < test_size < 1.0:
        raise DataError(f"test_size must be in (0, 1), got {test_size}")
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[ex.label].append(ex)
    rng = random.Random(seed)
    train: list[Example] = []
    test: list[Example] = []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        n_test = round(len(group) * test_size) if len(group) > 1 else 0
        test.extend(group[:n_test])
        train.extend(group[n_test:])
    return train, test


def write_examples(path: Path | str, examples: Iterable[Example]) -> None:
    """Write ``text,label`` CSV (or JSONL when the suffix says so)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        with path.open("w", encoding="utf-8") as fh:
            for ex in examples:
                fh.write(json.dumps(ex.model_dump()) + "\n")
        return
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for ex in examples:
            writer.writerow([ex.text, ex.label])
