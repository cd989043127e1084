"""galaxy-da models: backbone specs by name, classifier heads, domain classifier, gradient reversal.

Public API::

    get_backbone(name) -> BackboneSpec       # "deepmerge" | "resnet18" (or "resnet")
    backbone_names() / backbone_specs()      # every registered backbone, in table order
    create_classifier(config) -> Classifier  # the spec's backbone + head for a TrainConfig
    Classifier.features(x) / .forward(x) / .forward_with_features(x) / .penultimate(x)
    DomainClassifier(in_dim, hidden=1024, dropout=0.5)
    grad_reverse(x, coeff)

A backbone is one module in ``models/backbones/`` holding its network and its spec.
"""

from models.base import Backbone
from models.grl import GradientReverseFunction, grad_reverse
from models.heads import Classifier, ClassifierHead, DomainClassifier, create_classifier
from models.registry import (
    BackboneSpec,
    Hyper,
    UnknownNameError,
    backbone_names,
    backbone_specs,
    get_backbone,
    register_backbone,
)

__all__ = [
    "Backbone",
    "BackboneSpec",
    "Classifier",
    "ClassifierHead",
    "DomainClassifier",
    "GradientReverseFunction",
    "Hyper",
    "UnknownNameError",
    "backbone_names",
    "backbone_specs",
    "create_classifier",
    "get_backbone",
    "grad_reverse",
    "register_backbone",
]
