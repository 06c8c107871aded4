"""Captions of training images and the word-level vocabulary of the tiny text encoder.

A caption comes from a column of the task table (``caption_column``) or from a template
over the row's columns (``"{objects} at {site}"``). Besides the table's columns a
template can use ``task``, ``organ``, ``modality`` and ``objects``: the box classes of a
detection row (``"2 nodule, 1 cyst"``) or the label names present in a segmentation row's
mask description (``"organ, lesion"``). So clinical attributes in the metadata steer the
generation.

The tiny text encoder reads word ids from :class:`WordVocab`: lower-cased words, built
deterministically from the training captions and saved with the model. A model
fine-tuned from a Stable-Diffusion folder uses that folder's CLIP tokenizer instead.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from medfleet.errors import MedfleetError
from medfleet.tables import parse_boxes
from medfleet.tasks import TaskSpec, TaskType

DEFAULT_TEMPLATE = "{objects} at {site}"
"""Template used when the table has no caption column and none is given."""

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
_WORD = re.compile(r"[a-z0-9]+")


def template_fields(template: str) -> list[str]:
    """Names used by a ``str.format`` template.

    Example:
        >>> template_fields("{label} lesion at {site}")
        ['label', 'site']
    """
    return [name for _, name, _, _ in string.Formatter().parse(template) if name]


def objects_phrase(spec: TaskSpec, row: Mapping[str, str]) -> str:
    """What a row shows: counted box classes (detection) or the task's organ.

    Example:
        >>> spec = TaskSpec(name="d", type="detection", table="d.csv", classes=["cyst", "nodule"])
        >>> objects_phrase(spec, {"boxes": "nodule:1,1,4,4;cyst:5,5,8,8;nodule:9,9,12,12"})
        '2 nodule 1 cyst'
    """
    if spec.type is TaskType.detection:
        boxes = parse_boxes(row.get("boxes", ""))
        if not boxes:
            return "no finding"
        counts = Counter(b.label or "object" for b in boxes)
        return " ".join(f"{n} {name}" for name, n in counts.most_common())
    if spec.type is TaskType.segmentation:
        names = [v for k, v in sorted((spec.labels or {}).items()) if k != 0]
        return " ".join(names) or (spec.organ or spec.name)
    return spec.organ or spec.name


def make_caption(
    spec: TaskSpec,
    row: Mapping[str, str],
    *,
    column: str | None = None,
    template: str | None = None,
) -> str:
    """The caption of one table row.

    Args:
        spec: The task.
        row: The row (text cells).
        column: Caption column; wins over ``template`` when given.
        template: ``str.format`` template over the row's columns plus ``task``, ``organ``,
            ``modality`` and ``objects`` (default :data:`DEFAULT_TEMPLATE`).

    Raises:
        MedfleetError: The column or a template field is missing from the row.

    Example:
        >>> spec = TaskSpec(name="d", type="detection", table="d.csv", classes=["nodule"])
        >>> make_caption(spec, {"boxes": "nodule:1,1,4,4", "site": "site_a",
        ...                     "age_band": "60+"}, template="{objects}, {age_band}, {site}")
        '1 nodule, 60+, site_a'
    """
    if column:
        if column not in row:
            raise MedfleetError(
                f"task {spec.name!r}: case {row.get('case_id')!r} has no caption column "
                f"{column!r}; columns: {sorted(row)} (fix: pass an existing --caption-column)"
            )
        return str(row[column] or "").strip()
    template = template or DEFAULT_TEMPLATE
    values: dict[str, str] = {
        "task": spec.name,
        "organ": spec.organ or "",
        "modality": spec.modality or "",
        "objects": objects_phrase(spec, row),
    }
    values.update({k: str(v) for k, v in row.items() if k is not None})
    missing = [f for f in template_fields(template) if f not in values]
    if missing:
        raise MedfleetError(
            f"task {spec.name!r}: caption template {template!r} uses {missing}, which case "
            f"{row.get('case_id')!r} lacks (fix: use columns of the table: {sorted(row)})"
        )
    return template.format(**values).strip()


def words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of a caption.

    Example:
        >>> words("2 Nodule, 1 cyst at site_a")
        ['2', 'nodule', '1', 'cyst', 'at', 'site', 'a']
    """
    return _WORD.findall(text.lower())


@dataclass
class WordVocab:
    """A deterministic word-level vocabulary (special tokens first, then sorted words).

    Attributes:
        tokens: Token strings; the index is the id.
        max_words: Length of an encoded caption, markers and padding included.

    Example:
        >>> vocab = WordVocab.build(["a cyst", "a nodule"], max_words=6)
        >>> vocab.tokens[4:]
        ['a', 'cyst', 'nodule']
        >>> vocab.encode("a nodule here")
        [1, 4, 6, 3, 2, 0]
    """

    tokens: list[str]
    max_words: int = 16
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, captions: Iterable[str], max_words: int = 16) -> WordVocab:
        """Vocabulary of every word in ``captions``."""
        seen = sorted({w for c in captions for w in words(c)})
        return cls(list(SPECIAL_TOKENS) + seen, max_words)

    def encode(self, caption: str) -> list[int]:
        """Ids ``<bos> words <eos> <pad>...`` cut or padded to ``max_words``."""
        pad, bos, eos, unk = (self._index[t] for t in SPECIAL_TOKENS)
        ids = [self._index.get(w, unk) for w in words(caption)][: self.max_words - 2]
        ids = [bos, *ids, eos]
        return ids + [pad] * (self.max_words - len(ids))

    def encode_batch(self, captions: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for each caption."""
        return [self.encode(c) for c in captions]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {"tokens": self.tokens, "max_words": self.max_words}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> WordVocab:
        """Inverse of :meth:`to_dict`."""
        return cls(list(data["tokens"]), int(data["max_words"]))  # type: ignore[call-overload,arg-type]
