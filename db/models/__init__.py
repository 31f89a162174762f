"""All tables. Import models from here: `from db.models import Image, Split`."""
from db.models.base import Base, utcnow
from db.models.core import (
    AnnotationBatch,
    AnnotationBatchItem,
    DatasetRoot,
    Image,
    ImageStatus,
    Split,
    SplitMember,
)
from db.models.labels import Annotation, AnnotationStatus
from db.models.runs import Prediction, Run, RunKind, RunStatus, Suggestion
from db.models.settings import Setting

__all__ = [
    "Annotation",
    "AnnotationStatus",
    "AnnotationBatch",
    "AnnotationBatchItem",
    "Base",
    "DatasetRoot",
    "Image",
    "ImageStatus",
    "Prediction",
    "Run",
    "RunKind",
    "RunStatus",
    "Setting",
    "Split",
    "SplitMember",
    "Suggestion",
    "utcnow",
]
