"""Procedurally drawn chest-radiograph-like images whose pixels determine the image-grounded facts.

A :class:`Radiograph` (finding, patient anatomy, accession marker, noise seed) fully determines
its image: :func:`draw` renders it on a 128×128 grayscale canvas and :func:`encode_png` gives the
same bytes on every run (no timestamps or text chunks). Findings are drawn large and bright enough
to stay visible when a vision tower resizes the image to 64×64.

Geometry follows the radiological convention: the image is viewed facing the patient, so the
patient's **right** lung is on the image's **left**. A 16-cell strip along the top edge is a
burned-in accession marker: a stand-in for the anatomical uniqueness of a real radiograph, which a
tiny vision tower cannot resolve at 64 px. It makes every study image distinguishable, so facts
that can only be memorised (who, when, where) are learnable from the image alone.
"""

from __future__ import annotations

import enum
import io
import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

CANVAS = 128
CENTER = CANVAS // 2
MARKER_BITS = 16
MARKER_ROWS = 8  # the marker strip covers rows 0..7; each bit is an 8×8 cell
MAX_MARKER = (1 << MARKER_BITS) - 1

# Gray levels (0 = black); findings are brighter than anything they can overlap.
_AIR, _TISSUE_RANGE, _LUNG, _RIB_GAIN = 12.0, (85, 105), 40.0, 20.0
_MEDIASTINUM, _SPINE, _HEART, _CLAVICLE = 135.0, 150.0, 165.0, 185.0
_NODULE, _CONSOLIDATION, _EFFUSION = 235.0, 200.0, 190.0
_MARKER_ON, _MARKER_OFF = 235.0, 28.0


class FindingKind(enum.StrEnum):
    NODULE = "nodule"
    EFFUSION = "effusion"
    CONSOLIDATION = "consolidation"
    CARDIOMEGALY = "cardiomegaly"
    NONE = "none"


class Side(enum.StrEnum):
    """The patient's side (drawn mirrored: the patient's right is the image's left)."""

    RIGHT = "right"
    LEFT = "left"


class Zone(enum.StrEnum):
    UPPER = "upper"
    LOWER = "lower"


class Size(enum.StrEnum):
    SMALL = "small"
    LARGE = "large"


LOCALISED_KINDS = frozenset({FindingKind.NODULE, FindingKind.EFFUSION, FindingKind.CONSOLIDATION})


@dataclass(frozen=True)
class Finding:
    """The main finding of a study. Localised kinds have side, zone and size; the others none.

    Effusions collect at the lung base, so their zone is always lower.
    """

    kind: FindingKind
    side: Side | None = None
    zone: Zone | None = None
    size: Size | None = None

    def __post_init__(self) -> None:
        attributes = (self.side, self.zone, self.size)
        if self.kind in LOCALISED_KINDS and None in attributes:
            raise ValueError(f"a {self.kind} finding needs side, zone and size")
        if self.kind not in LOCALISED_KINDS and attributes != (None, None, None):
            raise ValueError(f"a {self.kind} finding has no side, zone or size")
        if self.kind is FindingKind.EFFUSION and self.zone is not Zone.LOWER:
            raise ValueError("an effusion is always in the lower zone")


def random_finding(rng: random.Random) -> Finding:
    """A finding drawn uniformly over kinds, then over side / zone / size."""
    kind = rng.choice(list(FindingKind))
    if kind not in LOCALISED_KINDS:
        return Finding(kind)
    side = rng.choice(list(Side))
    zone = Zone.LOWER if kind is FindingKind.EFFUSION else rng.choice(list(Zone))
    return Finding(kind, side, zone, rng.choice(list(Size)))


@dataclass(frozen=True)
class Anatomy:
    """A patient's body shape, in pixels of the 128-px canvas."""

    thorax_half_width: int  # centre line to the outer edge of a lung
    lung_top: int
    lung_bottom: int
    heart_half_width: int  # normal heart; cardiomegaly widens it
    tissue: int  # soft-tissue gray level


def random_anatomy(rng: random.Random) -> Anatomy:
    return Anatomy(thorax_half_width=rng.randint(42, 48), lung_top=rng.randint(22, 28),
                   lung_bottom=rng.randint(98, 106), heart_half_width=rng.randint(16, 19),
                   tissue=rng.randint(*_TISSUE_RANGE))


@dataclass(frozen=True)
class Radiograph:
    """Everything that determines a study image."""

    finding: Finding
    anatomy: Anatomy
    marker: int  # 1..MAX_MARKER, unique per study in a corpus
    noise_seed: int

    def __post_init__(self) -> None:
        if not 0 < self.marker <= MAX_MARKER:
            raise ValueError(f"marker must be in 1..{MAX_MARKER}")

    @classmethod
    def from_json(cls, data: dict) -> Radiograph:
        """Inverse of ``dataclasses.asdict``."""
        raw = data["finding"]
        attributes = (None if raw[name] is None else kind(raw[name])
                      for name, kind in (("side", Side), ("zone", Zone), ("size", Size)))
        return cls(Finding(FindingKind(raw["kind"]), *attributes), Anatomy(**data["anatomy"]),
                   marker=data["marker"], noise_seed=data["noise_seed"])


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends), canvas pixels


def _lung_ellipse(anatomy: Anatomy, side: Side) -> tuple[float, float, float, float]:
    """Centre x, centre y, half-width, half-height of one lung."""
    inner, outer = 7, anatomy.thorax_half_width
    half_width = (outer - inner) / 2
    centre_x = CENTER - inner - half_width if side is Side.RIGHT else CENTER + inner + half_width
    half_height = (anatomy.lung_bottom - anatomy.lung_top) / 2
    return centre_x, anatomy.lung_top + half_height, half_width, half_height


def zone_box(anatomy: Anatomy, side: Side, zone: Zone) -> Box:
    """The part of a lung zone where localised findings are drawn (inside the lung, lateral to the heart)."""
    centre_x, centre_y, half_width, half_height = _lung_ellipse(anatomy, side)
    lateral = -1 if side is Side.RIGHT else 1
    x_mid = centre_x + lateral * 0.25 * half_width
    y_mid = centre_y + (-0.5 if zone is Zone.UPPER else 0.45) * half_height
    dx, dy = 0.4 * half_width, 0.3 * half_height
    return round(x_mid - dx), round(y_mid - dy), round(x_mid + dx), round(y_mid + dy)


def heart_box(anatomy: Anatomy, *, enlarged: bool) -> Box:
    """Bounding box of the cardiac silhouette."""
    half_width = round(anatomy.heart_half_width * (1.65 if enlarged else 1.0))
    centre_x, centre_y, half_height = CENTER + 5, anatomy.lung_bottom - 16, 17
    return centre_x - half_width, centre_y - half_height, centre_x + half_width, centre_y + half_height


def _ellipse(xx: np.ndarray, yy: np.ndarray, box: Box | tuple[float, ...]) -> np.ndarray:
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _lung_mask(xx: np.ndarray, yy: np.ndarray, anatomy: Anatomy, side: Side) -> np.ndarray:
    cx, cy, rx, ry = _lung_ellipse(anatomy, side)
    return _ellipse(xx, yy, (cx - rx, cy - ry, cx + rx, cy + ry))


def _draw_finding(pixels: np.ndarray, xx: np.ndarray, yy: np.ndarray, radiograph: Radiograph,
                  rng: np.random.Generator) -> None:
    finding, anatomy = radiograph.finding, radiograph.anatomy
    if finding.kind not in LOCALISED_KINDS:
        return
    assert finding.side and finding.zone and finding.size  # guaranteed by Finding
    large = finding.size is Size.LARGE
    x0, y0, x1, y1 = zone_box(anatomy, finding.side, finding.zone)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if finding.kind is FindingKind.NODULE:
        radius = 9 if large else 5
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        level = _NODULE
    elif finding.kind is FindingKind.CONSOLIDATION:  # mottled airspace filling, dimmer than a nodule
        grow = 0.65 if large else 0.3
        mask = np.zeros_like(pixels, dtype=bool)
        for _ in range(5):
            jx, jy = rng.uniform(-0.25, 0.25, size=2)
            px, py = cx + jx * (x1 - x0), cy + jy * (y1 - y0)
            rx, ry = (x1 - x0) / 2 * (0.35 + grow), (y1 - y0) / 2 * (0.35 + grow)
            mask |= _ellipse(xx, yy, (px - rx, py - ry, px + rx, py + ry))
        mask &= _lung_mask(xx, yy, anatomy, finding.side)
        level = _CONSOLIDATION * rng.uniform(0.8, 1.0, size=pixels.shape)[mask]
    else:  # effusion: fluid at the lung base with a meniscus rising laterally
        lung_cx = _lung_ellipse(anatomy, finding.side)[0]
        height = anatomy.lung_bottom - anatomy.lung_top
        surface = anatomy.lung_bottom - (0.42 if large else 0.2) * height
        surface = surface - 0.4 * np.maximum(0.0, np.abs(xx - CENTER) - abs(lung_cx - CENTER))
        mask = _lung_mask(xx, yy, anatomy, finding.side) & (yy >= surface)
        level = _EFFUSION
    pixels[mask] = np.maximum(pixels[mask], level)


def draw(radiograph: Radiograph) -> Image.Image:
    """Render the radiograph as a 128×128 grayscale (mode ``L``) image."""
    anatomy = radiograph.anatomy
    rng = np.random.default_rng(radiograph.noise_seed)
    yy, xx = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
    pixels = np.full((CANVAS, CANVAS), _AIR)

    body = _ellipse(xx, yy, (CENTER - anatomy.thorax_half_width - 12, MARKER_ROWS + 6,
                             CENTER + anatomy.thorax_half_width + 12, CANVAS + 50))
    pixels[body] = anatomy.tissue
    lungs = _lung_mask(xx, yy, anatomy, Side.RIGHT) | _lung_mask(xx, yy, anatomy, Side.LEFT)
    pixels[lungs] = _LUNG
    for k in range(7):  # posterior ribs: shallow arcs across both lungs
        rib_y = anatomy.lung_top + 4 + 11 * k + 0.006 * (xx - CENTER) ** 2
        pixels[lungs & (np.abs(yy - rib_y) < 1.6)] += _RIB_GAIN
    mediastinum = (np.abs(xx - CENTER) < 9) & (yy >= anatomy.lung_top - 6) & body
    pixels[mediastinum] = _MEDIASTINUM
    pixels[(np.abs(xx - CENTER) < 4) & body] = _SPINE
    enlarged = radiograph.finding.kind is FindingKind.CARDIOMEGALY
    pixels[_ellipse(xx, yy, heart_box(anatomy, enlarged=enlarged))] = _HEART
    clavicle_y = anatomy.lung_top - 3 + 0.12 * np.abs(xx - CENTER)
    reach = (np.abs(xx - CENTER) > 6) & (np.abs(xx - CENTER) < anatomy.thorax_half_width + 4)
    pixels[reach & (np.abs(yy - clavicle_y) < 1.8)] = _CLAVICLE
    _draw_finding(pixels, xx, yy, radiograph, rng)

    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")
    image = image.filter(ImageFilter.GaussianBlur(0.8))
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0.0, 3.0, size=(CANVAS, CANVAS))
    bits = [(radiograph.marker >> (MARKER_BITS - 1 - i)) & 1 for i in range(MARKER_BITS)]
    cell = CANVAS // MARKER_BITS
    for i, bit in enumerate(bits):
        noisy[:MARKER_ROWS, i * cell:(i + 1) * cell] = _MARKER_ON if bit else _MARKER_OFF
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), mode="L")


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with no metadata chunks: identical for identical pixels."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()
