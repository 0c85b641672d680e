"""Metrics for generative data augmentation.

Distribution metrics compare real and generated images in a feature space (FID, KID,
improved precision/recall, realism score); coherence checks that generated images show
their intended class; the classification metrics report per-class results of the
downstream model.
"""

from gdaload.metrics.classification import (
    ClassificationReport,
    classification_report,
    confusion_matrix,
    per_class_metrics,
)
from gdaload.metrics.coherence import coherence, per_class_coherence
from gdaload.metrics.features import (
    FeatureArray,
    ImageSource,
    InceptionFeatures,
    Penultimate,
    as_feature_matrix,
    extract_features,
    load_inception,
    penultimate,
)
from gdaload.metrics.fid import fid, frechet_distance, kernel_inception_distance, kid
from gdaload.metrics.precision_recall import RealManifold, precision_recall, realism_score

__all__ = [
    "ClassificationReport",
    "FeatureArray",
    "ImageSource",
    "InceptionFeatures",
    "Penultimate",
    "RealManifold",
    "as_feature_matrix",
    "classification_report",
    "coherence",
    "confusion_matrix",
    "extract_features",
    "fid",
    "frechet_distance",
    "kernel_inception_distance",
    "kid",
    "load_inception",
    "penultimate",
    "per_class_coherence",
    "per_class_metrics",
    "precision_recall",
    "realism_score",
]
