"""Read and write MedForget's released layout.

    <level>_level/forget_set_all.parquet
    <level>_level/retain_set_all.parquet

Columns: ``image`` (struct ``{bytes, path}``, like the HF datasets Image feature), ``metadata``
(JSON list of ``{"Question", "Answer"}``) and ``hierarchy_metadata`` (JSON object with
``institution_id``, ``patient_id``, ``study_id``, ``section_name``, ``hierarchy_level``). One row
groups the QA pairs of one image and hierarchy node (same image, path and level).

Export writes only trainable records (train split, no eval-only forms): MedForget's layout has no
holdout. Each QA pair also carries the record's id, fact kind and fact fields (``record_id``,
``fact_kind``, ``fact_key``, ``fact_value``, ``form``, ``shared`` and the context fields —
extra keys MedForget's own readers ignore) so an export imports back unchanged. Import infers what
the layout does not say: the task from the question (``[blank]`` → cloze, ``A) … B) …`` →
classification with parsed options, else generation), ``fact_kind`` private unless given, the level
from the ids present when ``hierarchy_level`` is not one of ours; the fact is owned by the row's
node (never shared), its key ``imported-<digest of the question stem>``, its value the answer (the
option text for a letter), its form ``imported-<task>``. Problems are reported with the file, the
1-based row and the field.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import string
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from .entities import HierarchyNode
from .qa import parse_choices
from .schema import (
    CLOZE_BLANK,
    IMAGES_DIR,
    Corpus,
    CorpusError,
    FactKind,
    Level,
    Record,
    Section,
    Split,
    Task,
    new_corpus_dir,
    node_path,
    record_from_json,
    write_corpus,
)

LEVEL_SUFFIX = "_level"
FORGET_FILE = "forget_set_all.parquet"
RETAIN_FILE = "retain_set_all.parquet"
COLUMNS = ("image", "metadata", "hierarchy_metadata")
# Record fields an export carries in each QA pair beside Question / Answer (besides fact_kind).
_EXTRA_KEYS = ("record_id", "fact_key", "fact_value", "form", "shared", "institution_name", "study_date",
               "modality")
_SCHEMA = pa.schema([("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                     ("metadata", pa.string()), ("hierarchy_metadata", pa.string())])


# --- export ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExportedLevel:
    """What one ``<level>_level`` directory received."""

    level: Level
    forget_records: int
    forget_rows: int
    retain_records: int
    retain_rows: int


def default_forget_node(corpus: Corpus, level: Level) -> HierarchyNode:
    """The node at ``level`` of the corpus's first trainable record (with a section, for sections)."""
    for record in corpus.select(trainable=True):
        if level is not Level.SECTION or record.section is not None:
            return HierarchyNode.of(record, level)
    raise ValueError(f"the corpus has no trainable record at the {level} level")


def _rows(corpus: Corpus, records: Iterable[Record]) -> list[dict]:
    """One row per (image, path, level), in corpus order."""
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        key = (record.image, record.institution_id, record.patient_id, record.study_id, record.section,
               record.level)
        groups.setdefault(key, []).append(record)
    rows = []
    for (image, institution_id, patient_id, study_id, section, level), members in groups.items():
        metadata = [{"Question": r.question, "Answer": r.answer,
                     **{name: getattr(r, name) for name in _EXTRA_KEYS},
                     "fact_kind": r.fact_kind.value} for r in members]
        hierarchy = {"institution_id": institution_id, "patient_id": patient_id, "study_id": study_id,
                     "section_name": section.value if section else None, "hierarchy_level": level.value}
        rows.append({"image": {"bytes": (corpus.root / image).read_bytes(), "path": Path(image).name},
                     "metadata": json.dumps(metadata, ensure_ascii=False),
                     "hierarchy_metadata": json.dumps(hierarchy, ensure_ascii=False)})
    return rows


def export_medforget(corpus: Corpus, out: Path,
                     forget: Mapping[Level, HierarchyNode | Collection[str]]) -> list[ExportedLevel]:
    """Write ``<level>_level/{forget,retain}_set_all.parquet`` for each level in ``forget``.

    The forget set of a level is the trainable records under its node (see
    :class:`~mllm.data.entities.HierarchyNode`) or the given record ids; the retain set is every
    other trainable record.
    """
    trainable = corpus.select(trainable=True)
    known = {r.record_id for r in trainable}
    forget_ids: dict[Level, set[str]] = {}
    for level, target in forget.items():
        if isinstance(target, HierarchyNode):
            ids = {r.record_id for r in trainable if target.contains(r)}
        else:
            ids = set(target)
            if ids - known:
                raise ValueError(f"{len(ids - known)} {level}-level forget ids are not trainable records")
        if not ids:
            raise ValueError(f"the {level}-level forget set is empty")
        forget_ids[level] = ids
    exported = []
    for level, ids in forget_ids.items():
        directory = out / f"{level.value}{LEVEL_SUFFIX}"
        directory.mkdir(parents=True, exist_ok=True)
        counts = []
        for name, members in ((FORGET_FILE, [r for r in trainable if r.record_id in ids]),
                              (RETAIN_FILE, [r for r in trainable if r.record_id not in ids])):
            rows = _rows(corpus, members)
            pq.write_table(pa.Table.from_pylist(rows, schema=_SCHEMA), directory / name)
            counts += [len(members), len(rows)]
        exported.append(ExportedLevel(level, *counts))
    return exported


# --- import ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MedForgetImport:
    """An imported corpus and, per level directory (``patient`` for ``patient_level``), its sets."""

    corpus: Corpus
    forget: dict[str, frozenset[str]]
    retain: dict[str, frozenset[str]]


def infer_task(question: str) -> Task:
    """MedForget's own rule: ``[blank]`` → cloze, lettered options → classification, else generation."""
    if CLOZE_BLANK in question:
        return Task.CLOZE
    return Task.CLASSIFICATION if parse_choices(question) else Task.GENERATION


def _letter(answer: str, options: tuple[str, ...]) -> str:
    """A classification answer as its letter, when given as ``B``, ``B) text`` or the option text."""
    letters = string.ascii_uppercase[:len(options)]
    text = answer.strip()
    lettered = re.fullmatch(r"([A-Z])\)(.*)", text)
    if text in letters or (lettered and lettered.group(1) in letters):
        return text[0]
    return letters[options.index(text)] if text in options else text


def _level(hierarchy: dict) -> Level:
    """``hierarchy_level`` if it names one of our levels, else the deepest node the ids reach."""
    name = str(hierarchy.get("hierarchy_level") or "").strip().lower().removesuffix(LEVEL_SUFFIX)
    if name in {level.value for level in Level}:
        return Level(name)
    given = [hierarchy.get(key) not in (None, "") for key in ("patient_id", "study_id", "section_name")]
    return list(Level)[len(list(itertools.takewhile(bool, given)))]


Fail = Callable[[str, str], CorpusError]  # (field, message) → error naming file, row and field
PENDING = "pending"  # record_id of a QA pair that did not carry one


def _json_cell(row: pd.Series, column: str, kind: type, fail: Fail) -> Any:
    try:
        value = json.loads(row[column])
    except (TypeError, json.JSONDecodeError):
        raise fail(column, "is not a valid JSON string") from None
    if not isinstance(value, kind):
        raise fail(column, f"must be a JSON {'list' if kind is list else 'object'}")
    return value


def _qa_fields(qa: dict, hierarchy: dict, image: str, fallback_id: str) -> dict[str, Any]:
    """One QA pair as :func:`record_from_json` input (``record_id`` is PENDING unless stored)."""
    answer = qa.get("Answer", "")
    answer = " ".join(str(a) for a in answer if a) if isinstance(answer, list) else str(answer)
    question = str(qa.get("Question", ""))
    task = infer_task(question)
    choices = parse_choices(question) if task is Task.CLASSIFICATION else None
    stem, options = choices if choices else (question, ())
    letter = _letter(answer, options) if options else answer
    section = hierarchy.get("section_name")
    section = str(section).strip().upper() if section else None
    level = _level(hierarchy)
    place = {"institution_id": str(hierarchy.get("institution_id") or "unknown"),
             "patient_id": str(hierarchy.get("patient_id") or fallback_id),
             "study_id": str(hierarchy.get("study_id") or fallback_id)}
    try:
        owner = node_path(*place.values(), Section(section) if section else None, level)
    except ValueError:
        owner = "?"  # an unknown section name: record_from_json reports the section field
    letters = string.ascii_uppercase[:len(options)]
    value = options[letters.index(letter)] if len(letter) == 1 and letter in letters else answer
    digest = hashlib.sha256(stem.strip().casefold().encode()).hexdigest()[:12]
    fields = {
        "record_id": qa.get("record_id") or PENDING, **place, "section": section,
        "level": level.value, "task": task.value,
        "fact_kind": qa.get("fact_kind") or FactKind.PRIVATE.value, "split": Split.TRAIN.value,
        "question": question, "answer": letter, "image": image, "options": list(options),
        "fact_key": f"imported-{digest}", "fact_value": value or answer, "owner_level": level.value,
        "owner_id": owner, "form": f"imported-{task.value}", "shared": False}
    fields.update({name: qa[name] for name in _EXTRA_KEYS if name in qa and name != "record_id"})
    return fields


class _Importer:
    """Collects the records of every file, deduplicated, with their images written once."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.drafts: dict[object, dict[str, Any]] = {}  # identity → record fields
        self.images: dict[str, str] = {}  # sha256 → path relative to the corpus

    def image(self, cell: object, fail: Fail) -> tuple[str, str]:
        """Write the image once; return its corpus path and digest."""
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not isinstance(data, bytes | bytearray):
            raise fail("image", "must be a struct with image bytes")
        digest = hashlib.sha256(data).hexdigest()
        if digest not in self.images:
            try:
                with Image.open(io.BytesIO(data)) as picture:
                    extension = {"JPEG": "jpg"}.get(str(picture.format), str(picture.format).lower())
            except UnidentifiedImageError:
                raise fail("image", "is not a readable picture") from None
            self.images[digest] = f"{IMAGES_DIR}/{digest}.{extension}"
            (self.out / self.images[digest]).write_bytes(bytes(data))
        return self.images[digest], digest

    def row(self, path: Path, number: int, row: pd.Series) -> list[object]:
        """Add one parquet row's QA pairs; return their identities."""

        def fail(name: str, message: str) -> CorpusError:
            return CorpusError(path, message, line=number, field_name=name)

        image, digest = self.image(row["image"], fail)
        qa_pairs = _json_cell(row, "metadata", list, fail)
        hierarchy = _json_cell(row, "hierarchy_metadata", dict, fail)
        if not all(isinstance(qa, dict) for qa in qa_pairs):
            raise fail("metadata", "must be a list of {Question, Answer} objects")
        identities = []
        for qa in qa_pairs:
            fields = _qa_fields(qa, hierarchy, image, fallback_id=f"unknown-{digest[:12]}")
            record_from_json(fields, path=path, line=number)  # validates, names the field
            identity = qa.get("record_id") or tuple(str(v) for v in fields.values())
            if self.drafts.setdefault(identity, fields) != fields:
                raise fail("metadata", "a record_id is reused for a different question")
            identities.append(identity)
        return identities

    def records(self) -> tuple[list[Record], dict[object, str]]:
        """The records, keeping stored ids only if every QA pair had one."""
        keep = all(fields["record_id"] != PENDING for fields in self.drafts.values())
        ids = {identity: fields["record_id"] if keep else f"r{n:06d}"
               for n, (identity, fields) in enumerate(self.drafts.items(), start=1)}
        records = [record_from_json(dict(fields, record_id=ids[identity]), path=self.out)
                   for identity, fields in self.drafts.items()]
        return records, ids


def import_medforget(src: Path, out: Path, *, name: str = "medforget-import") -> MedForgetImport:
    """Convert a MedForget-layout directory into a corpus at ``out`` (new or empty)."""
    directories = sorted(d for d in Path(src).iterdir() if d.is_dir() and d.name.endswith(LEVEL_SUFFIX))
    if not directories:
        raise CorpusError(src, f"no <level>{LEVEL_SUFFIX} directories: not a MedForget layout")
    importer = _Importer(new_corpus_dir(Path(out)))
    membership: dict[tuple[str, str], list[object]] = {}
    for directory in directories:
        for file_name in (FORGET_FILE, RETAIN_FILE):
            path = directory / file_name
            if not path.is_file():
                raise CorpusError(path, "not found")
            try:
                frame = pd.read_parquet(path)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise CorpusError(path, f"not a readable parquet file ({type(exc).__name__})") from None
            for column in COLUMNS:
                if column not in frame.columns:
                    raise CorpusError(path, "missing column", field_name=column)
            identities = membership.setdefault((directory.name.removesuffix(LEVEL_SUFFIX), file_name), [])
            for number, (_, row) in enumerate(frame.iterrows(), start=1):
                identities += importer.row(path, number, row)
    records, ids = importer.records()
    header = write_corpus(out, name=name, seed=0, size="imported", records=records,
                          generator="oblivio-medforget-import")

    def sets(file_name: str) -> dict[str, frozenset[str]]:
        return {label: frozenset(ids[i] for i in identities)
                for (label, kind), identities in membership.items() if kind == file_name}

    return MedForgetImport(Corpus(root=Path(out), header=header, records=tuple(records)),
                           forget=sets(FORGET_FILE), retain=sets(RETAIN_FILE))
