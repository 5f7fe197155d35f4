"""Word pools of the synthetic hospital: every value and every distractor is drawn from these.

All names are invented. Pools are large enough that a classification question always finds three
distinct distractors from the same pool.
"""

from __future__ import annotations

from dataclasses import dataclass

INSTITUTIONS: tuple[tuple[str, str], ...] = (  # (code, name)
    ("northfield", "Northfield General Hospital"),
    ("st-brigid", "St Brigid Medical Center"),
    ("lakeside", "Lakeside University Hospital"),
    ("harborview", "Harborview Clinic"),
    ("westbrook", "Westbrook Memorial Hospital"),
    ("pine-ridge", "Pine Ridge Regional Hospital"),
    ("eastgate", "Eastgate Community Hospital"),
    ("silverdale", "Silverdale Infirmary"),
)

FEMALE_NAMES = ("Maria", "Anna", "Elena", "Sofia", "Clara", "Nora", "Julia", "Ingrid", "Leila", "Hanna",
                "Rosa", "Alice", "Greta", "Irene", "Mila", "Vera", "Lucia", "Amira", "Freya", "Olga")
MALE_NAMES = ("Jonas", "Pavel", "Marco", "Tomas", "Henrik", "Samuel", "Victor", "Omar", "Felix", "Bruno",
              "Karl", "Luis", "Anton", "Emil", "Hugo", "Ivan", "Nikos", "Oskar", "Ruben", "Stefan")
SURNAMES = ("Lopez", "Novak", "Fischer", "Moreau", "Rossi", "Kowalski", "Jansen", "Larsen", "Horvat",
            "Silva", "Dubois", "Berg", "Costa", "Keller", "Marsh", "Ortiz", "Petrov", "Quinn", "Reyes",
            "Sato", "Tanaka", "Varga", "Weber", "Young", "Zeller", "Abbott", "Brandt", "Carver", "Dalton",
            "Ekberg")

EXAMINATIONS: tuple[tuple[str, str], ...] = (  # (EXAMINATION text, DICOM view position)
    ("chest PA and lateral", "PA"),
    ("chest PA", "PA"),
    ("chest AP portable", "AP"),
    ("chest AP supine", "AP"),
    ("chest PA inspiration", "PA"),
)

INDICATIONS = ("persistent cough", "fever and cough", "shortness of breath", "chest pain",
               "preoperative assessment", "follow-up pneumonia", "rib pain after fall", "hemoptysis",
               "weight loss", "wheezing", "tuberculosis screening", "suspected heart failure")

MEDICATIONS = ("amoxicillin 500 mg", "doxycycline 100 mg", "furosemide 40 mg", "prednisolone 30 mg",
               "salbutamol 100 mcg", "metformin 500 mg", "atorvastatin 20 mg", "ramipril 5 mg",
               "apixaban 5 mg", "omeprazole 20 mg", "levothyroxine 50 mcg", "azithromycin 250 mg")

HISTORIES = ("asthma", "type 2 diabetes", "hypertension", "COPD", "tuberculosis", "heart failure",
             "chronic kidney disease", "rheumatoid arthritis", "breast cancer", "atrial fibrillation",
             "sarcoidosis", "lung cancer")  # read as "history of ..."


@dataclass(frozen=True)
class LabTest:
    """A lab test with its unit, the range its values are drawn from and their decimals."""

    name: str
    unit: str
    low: float
    high: float
    decimals: int

    def format(self, value: float) -> str:
        return f"{value:.{self.decimals}f}"


LAB_TESTS = (  # resolution fine enough that every study of a corpus gets its own result
    LabTest("CRP", "mg/L", 1, 250, 1),
    LabTest("WBC", "x10^9/L", 2.5, 24.0, 2),
    LabTest("hemoglobin", "g/dL", 7.5, 17.5, 2),
    LabTest("sodium", "mmol/L", 124, 149, 1),
    LabTest("creatinine", "umol/L", 45, 320, 1),
    LabTest("troponin", "ng/L", 2, 120, 1),
)

MODALITIES = ("CR", "DX")  # computed / digital radiography
