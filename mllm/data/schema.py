"""The corpus schema: one record is one image-QA instance placed in the hospital hierarchy.

A corpus on disk is a directory::

    corpus.json      header: schema version, name, seed, size, record count, records digest
    records.jsonl    one :class:`Record` per line
    images/          the PNG files records point to (paths relative to the corpus directory)

Loading validates every line and reports the first problem with its file, line and field.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

SCHEMA_VERSION = 2
HEADER_FILE = "corpus.json"
RECORDS_FILE = "records.jsonl"
IMAGES_DIR = "images"


class Level(enum.StrEnum):
    """Levels of the data hierarchy, from coarse to fine."""

    INSTITUTION = "institution"
    PATIENT = "patient"
    STUDY = "study"
    SECTION = "section"


class Section(enum.StrEnum):
    """Report sections (as in MedForget) and clinical sections."""

    EXAMINATION = "EXAMINATION"
    INDICATION = "INDICATION"
    FINDINGS = "FINDINGS"
    IMPRESSION = "IMPRESSION"
    LAB = "LAB"
    MEDICATION = "MEDICATION"
    RECORD = "RECORD"


class Task(enum.StrEnum):
    """The three MedForget task types."""

    GENERATION = "generation"  # free text, scored with ROUGE-L F1
    CLASSIFICATION = "classification"  # "A) ... B) ..." options in the question, answer is a letter
    CLOZE = "cloze"  # question contains "[blank]", answer is the missing text


class FactKind(enum.StrEnum):
    """Whether an answer can only be memorised or can be read off the image."""

    PRIVATE = "private"
    IMAGE_GROUNDED = "image_grounded"


class Split(enum.StrEnum):
    """``train`` records are fine-tuned on; ``holdout`` records are never trained on."""

    TRAIN = "train"
    HOLDOUT = "holdout"


CLOZE_BLANK = "[blank]"


class CorpusError(ValueError):
    """A corpus file is malformed. Names the file, the 1-based line (if any) and the field."""

    def __init__(self, path: Path | str, message: str, *, line: int | None = None,
                 field_name: str | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.field_name = field_name
        where = self.path + (f":{line}" if line is not None else "")
        what = f" field '{field_name}'" if field_name else ""
        super().__init__(f"{where}:{what} {message}")


def node_path(institution_id: str, patient_id: str, study_id: str, section: Section | None,
              level: Level) -> str:
    """The id of the node at ``level`` on a record's path: ``institution[/patient[/study[/SECTION]]]``."""
    parts = [institution_id, patient_id, study_id, section.value if section else ""]
    return "/".join(parts[:list(Level).index(level) + 1])


@dataclass(frozen=True)
class Record:
    """One image-QA training or evaluation instance, and the fact it asks about.

    ``section`` is set for section-level questions and ``None`` for questions about the study,
    patient or institution as a whole. The fact fields (schema version 2):

    * ``fact_key`` names the kind of fact (``patient.name``, ``section.lab`` ...) and ``fact_value``
      its value for this owner, independent of the task (a classification answer is a letter, its
      fact value the option text; a cloze answer is the blanked part of the value).
    * ``owner_level`` / ``owner_id``: the node that owns the fact — always on the record's own path,
      ``owner_id`` written as :func:`node_path` (``owner_level`` equals ``level``).
    * ``shared``: the fact is owned above the image's study and asked on every study image of its
      owner (institution name, patient name): its value legitimately appears in several studies.
    * ``form``: the phrasing / task form (``generation-0``, ``cloze-1``, ``classification-0`` ...).
    * ``eval_only``: a held-out form, never trained on (a phrasing or a cross-task form).

    ``institution_name``, ``study_date`` and ``modality`` are the hierarchy context the prompt
    renderer (:mod:`mllm.data.prompts`) may show; ``None`` when unknown.
    """

    record_id: str
    institution_id: str
    patient_id: str
    study_id: str
    section: Section | None
    level: Level
    task: Task
    fact_kind: FactKind
    split: Split
    question: str
    answer: str
    image: str
    fact_key: str
    fact_value: str
    owner_level: Level
    owner_id: str
    form: str
    shared: bool = False
    eval_only: bool = False
    options: tuple[str, ...] = field(default_factory=tuple)
    institution_name: str | None = None
    study_date: str | None = None
    modality: str | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data["options"] = list(self.options)
        return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in data.items()}

    @property
    def fact(self) -> tuple[str, str]:
        """The fact this record asks, ``(fact_key, owner_id)``: every form, phrasing and image it is
        asked on shares it."""
        return self.fact_key, self.owner_id

    @property
    def is_trainable(self) -> bool:
        """True for records the model is fine-tuned on (train split, not an eval-only form)."""
        return self.split is Split.TRAIN and not self.eval_only


_REQUIRED_STR = ("record_id", "institution_id", "patient_id", "study_id", "question", "answer",
                 "image", "fact_key", "fact_value", "owner_id", "form")
_OPTIONAL_STR = ("institution_name", "study_date", "modality")
_BOOLS = ("shared", "eval_only")
_ENUMS: dict[str, type[enum.Enum]] = {
    "level": Level, "task": Task, "fact_kind": FactKind, "split": Split, "owner_level": Level}


def record_from_json(data: object, *, path: Path | str, line: int | None = None) -> Record:
    """Validate one decoded JSON object and build a :class:`Record`, or raise :class:`CorpusError`."""

    def fail(name: str | None, message: str) -> CorpusError:
        return CorpusError(path, message, line=line, field_name=name)

    if not isinstance(data, dict):
        raise fail(None, "expected a JSON object")
    known = set(Record.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise fail(unknown[0], "unknown field")
    values: dict[str, object] = {}
    for name in _REQUIRED_STR:
        value = data.get(name)
        if not isinstance(value, str) or not value.strip():
            raise fail(name, "must be a non-empty string")
        values[name] = value
    for name in _OPTIONAL_STR:
        value = data.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise fail(name, "must be null or a non-empty string")
        values[name] = value
    for name in _BOOLS:
        value = data.get(name, False)
        if not isinstance(value, bool):
            raise fail(name, "must be true or false")
        values[name] = value
    for name, kind in _ENUMS.items():
        try:
            values[name] = kind(data.get(name))
        except ValueError:
            allowed = ", ".join(member.value for member in kind)
            raise fail(name, f"must be one of: {allowed}") from None
    section = data.get("section")
    if section is None:
        values["section"] = None
    else:
        try:
            values["section"] = Section(section)
        except ValueError:
            allowed = ", ".join(member.value for member in Section)
            raise fail("section", f"must be null or one of: {allowed}") from None
    if values["level"] is Level.SECTION and values["section"] is None:
        raise fail("section", "is required for section-level questions")
    if values["owner_level"] is not values["level"]:
        raise fail("owner_level", "must equal level (the node the question asks about)")
    owner = node_path(*(values[k] for k in ("institution_id", "patient_id", "study_id", "section",
                                             "owner_level")))  # type: ignore[arg-type]
    if values["owner_id"] != owner:
        raise fail("owner_id", "must name the node at owner_level on the record's own path")
    if values["shared"] and values["owner_level"] not in (Level.INSTITUTION, Level.PATIENT):
        raise fail("shared", "only facts owned above the study (institution, patient) can be shared")
    options = data.get("options", [])
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        raise fail("options", "must be a list of strings")
    if values["task"] is Task.CLASSIFICATION and len(options) < 2:
        raise fail("options", "classification needs at least two options")
    if values["task"] is Task.CLOZE and CLOZE_BLANK not in str(values["question"]):
        raise fail("question", f"cloze questions must contain {CLOZE_BLANK}")
    return Record(options=tuple(options), **values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CorpusHeader:
    """The corpus header (``corpus.json``)."""

    name: str
    seed: int
    size: str
    record_count: int
    records_sha256: str
    schema_version: int = SCHEMA_VERSION
    generator: str = "oblivio-synth"


@dataclass(frozen=True)
class Corpus:
    """A loaded corpus: its directory, header and records (in file order)."""

    root: Path
    header: CorpusHeader
    records: tuple[Record, ...]

    def image_path(self, record: Record) -> Path:
        return self.root / record.image

    def select(self, *, split: Split | None = None, trainable: bool | None = None) -> list[Record]:
        """Records filtered by split and/or trainability, in corpus order."""
        out = []
        for record in self.records:
            if split is not None and record.split is not split:
                continue
            if trainable is not None and record.is_trainable is not trainable:
                continue
            out.append(record)
        return out


def _records_lines(records: Iterable[Record]) -> Iterator[str]:
    for record in records:
        yield json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False) + "\n"


def new_corpus_dir(root: Path) -> Path:
    """Create ``root`` and its ``images/`` directory; refuse a ``root`` that already has files."""
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty")
    (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    return root


def write_corpus(root: Path, *, name: str, seed: int, size: str, records: list[Record],
                 generator: str = "oblivio-synth") -> CorpusHeader:
    """Write ``records.jsonl`` and ``corpus.json`` under ``root`` (images are written by the caller)."""
    root.mkdir(parents=True, exist_ok=True)
    text = "".join(_records_lines(records))
    (root / RECORDS_FILE).write_text(text, encoding="utf-8")
    header = CorpusHeader(name=name, seed=seed, size=size, record_count=len(records),
                          records_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                          generator=generator)
    (root / HEADER_FILE).write_text(json.dumps(asdict(header), indent=2) + "\n", encoding="utf-8")
    return header


def load_corpus(root: Path | str) -> Corpus:
    """Load and validate a corpus directory; raise :class:`CorpusError` naming file, line and field."""
    root = Path(root)
    header_path = root / HEADER_FILE
    if not header_path.is_file():
        raise CorpusError(header_path, "not found (is this a corpus directory?)")
    try:
        raw_header = json.loads(header_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorpusError(header_path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(raw_header, dict):
        raise CorpusError(header_path, "expected a JSON object")
    version = raw_header.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CorpusError(header_path, f"unsupported schema version {version!r} "
                          f"(this Oblivio reads version {SCHEMA_VERSION})", field_name="schema_version")
    try:
        header = CorpusHeader(**raw_header)
    except TypeError as exc:
        raise CorpusError(header_path, str(exc)) from None

    records_path = root / RECORDS_FILE
    if not records_path.is_file():
        raise CorpusError(records_path, "not found")
    raw = records_path.read_bytes()
    records: list[Record] = []
    seen: set[str] = set()
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(records_path, f"invalid JSON: {exc.msg}", line=number) from None
        record = record_from_json(data, path=records_path, line=number)
        if record.record_id in seen:
            raise CorpusError(records_path, f"duplicate record id {record.record_id!r}",
                              line=number, field_name="record_id")
        if not (root / record.image).is_file():
            raise CorpusError(records_path, "image file not found", line=number, field_name="image")
        seen.add(record.record_id)
        records.append(record)
    if len(records) != header.record_count:
        raise CorpusError(header_path, f"says {header.record_count} records, "
                          f"{RECORDS_FILE} has {len(records)}", field_name="record_count")
    if hashlib.sha256(raw).hexdigest() != header.records_sha256:
        raise CorpusError(header_path, f"{RECORDS_FILE} does not match its digest",
                          field_name="records_sha256")
    return Corpus(root=root, header=header, records=tuple(records))
