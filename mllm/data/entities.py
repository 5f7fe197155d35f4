"""The hierarchy of a corpus: nodes (for forget / retain / neighbour sets) and entity details.

**Where a record sits.** Every :class:`~mllm.data.schema.Record` carries its full path:
``institution_id → patient_id → study_id → section`` (``section`` only on section-level records).
A record *belongs to every node on that path* (:meth:`HierarchyNode.path` lists them); ``level``
only says which of those nodes its question asks about. So the forget set of a node is simply
``[r for r in records if node.contains(r)]``: forgetting study S removes every record asked on S's
image (including "who is this patient?"), forgetting section S/FINDINGS only the FINDINGS records
of S. Neighbours of a node are the records under its parent that it does not contain.

In synthetic corpora ``institution_id`` is a short institution code, ``patient_id`` the MRN (unique
in the corpus, assigned by the institution's ``mrn_system``) and ``study_id`` the DICOM
StudyInstanceUID. ``hierarchy.json`` holds the details of each entity (names, dates, modality, the
drawing spec of each study image); corpora imported from elsewhere may not have it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .images import Radiograph
from .schema import CorpusError, Level, Record, Section, Split

HIERARCHY_FILE = "hierarchy.json"
HIERARCHY_VERSION = 1


def _depth(below: tuple[object, ...]) -> int:
    """How many of (patient, study, section) are given before the first missing one."""
    return next((i for i, part in enumerate(below) if part is None), len(below))


@dataclass(frozen=True)
class HierarchyNode:
    """A node of the hierarchy, written ``institution[/patient[/study[/SECTION]]]``."""

    institution_id: str
    patient_id: str | None = None
    study_id: str | None = None
    section: Section | None = None

    def __post_init__(self) -> None:
        below = (self.patient_id, self.study_id, self.section)
        depth = _depth(below)
        if any(part is not None for part in below[depth:]):
            raise ValueError("a node names every ancestor: institution, then patient, then study")

    @property
    def level(self) -> Level:
        return list(Level)[_depth((self.patient_id, self.study_id, self.section))]

    def contains(self, record: Record) -> bool:
        """True if ``record`` lies on a path through this node (see the module docstring)."""
        path = (record.institution_id, record.patient_id, record.study_id, record.section)
        own = (self.institution_id, self.patient_id, self.study_id, self.section)
        return all(mine is None or mine == theirs for mine, theirs in zip(own, path, strict=True))

    @classmethod
    def of(cls, record: Record, level: Level) -> HierarchyNode:
        """The node at ``level`` on ``record``'s path (a section node needs a section-level record)."""
        if level is Level.SECTION and record.section is None:
            raise ValueError("record has no section")
        depth = list(Level).index(level)
        below = (record.patient_id, record.study_id, record.section)
        return cls(record.institution_id, *below[:depth], *(None,) * (3 - depth))

    @classmethod
    def path(cls, record: Record) -> tuple[HierarchyNode, ...]:
        """Every node ``record`` belongs to, from its institution down to its study or section."""
        return tuple(cls.of(record, level) for level in Level
                     if level is not Level.SECTION or record.section is not None)

    @classmethod
    def parse(cls, text: str) -> HierarchyNode:
        """Parse ``institution[/patient[/study[/SECTION]]]``."""
        parts = text.split("/")
        if not 1 <= len(parts) <= 4 or not all(part.strip() for part in parts):
            raise ValueError("expected institution[/patient[/study[/SECTION]]]")
        section = Section(parts[3]) if len(parts) == 4 else None
        ids = (parts[1:3] + [None, None])[:2]
        return cls(parts[0], ids[0], ids[1], section)

    def __str__(self) -> str:
        parts = [self.institution_id, self.patient_id, self.study_id, self.section]
        return "/".join(str(part) for part in parts if part is not None)


@dataclass(frozen=True)
class InstitutionInfo:
    institution_id: str  # short code
    name: str
    mrn_system: str  # identifier system URI of the institution's MRNs


@dataclass(frozen=True)
class PatientInfo:
    patient_id: str  # MRN
    institution_id: str
    name: str
    sex: str  # "female" / "male"
    birth_date: str  # ISO date
    split: Split


@dataclass(frozen=True)
class StudyInfo:
    study_id: str  # DICOM StudyInstanceUID
    patient_id: str
    study_date: str  # ISO date
    modality: str
    body_part: str
    view: str
    image: str  # path relative to the corpus directory
    radiograph: Radiograph  # draws the image again, bit for bit
    split: Split


@dataclass(frozen=True)
class Hierarchy:
    institutions: tuple[InstitutionInfo, ...]
    patients: tuple[PatientInfo, ...]
    studies: tuple[StudyInfo, ...]


def _study_json(study: StudyInfo) -> dict:
    data = asdict(study)
    data["split"] = study.split.value
    return data


def write_hierarchy(root: Path, hierarchy: Hierarchy) -> None:
    """Write ``hierarchy.json`` under ``root``."""
    data = {
        "version": HIERARCHY_VERSION,
        "institutions": [asdict(i) for i in hierarchy.institutions],
        "patients": [dict(asdict(p), split=p.split.value) for p in hierarchy.patients],
        "studies": [_study_json(s) for s in hierarchy.studies],
    }
    (root / HIERARCHY_FILE).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n",
                                       encoding="utf-8")


def load_hierarchy(root: Path | str) -> Hierarchy:
    """Load ``hierarchy.json`` of a corpus directory; raise :class:`CorpusError` if it is missing or bad."""
    path = Path(root) / HIERARCHY_FILE
    if not path.is_file():
        raise CorpusError(path, "not found (only synthetic corpora have one)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CorpusError(path, f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    if not isinstance(data, dict) or data.get("version") != HIERARCHY_VERSION:
        raise CorpusError(path, f"expected an object with version {HIERARCHY_VERSION}", field_name="version")
    entry = "institutions"
    try:
        institutions = tuple(InstitutionInfo(**item) for item in data[entry])
        entry = "patients"
        patients = tuple(PatientInfo(**dict(item, split=Split(item["split"]))) for item in data[entry])
        entry = "studies"
        studies = tuple(StudyInfo(**dict(item, split=Split(item["split"]),
                                         radiograph=Radiograph.from_json(item["radiograph"])))
                        for item in data[entry])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorpusError(path, f"malformed entry ({type(exc).__name__})", field_name=entry) from None
    return Hierarchy(institutions, patients, studies)
