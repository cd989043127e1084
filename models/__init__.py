"""galaxy-da models: backbones by name, classifier heads, domain classifier, gradient reversal.

Public API::

    create_backbone(name, **kw) -> Backbone          # "deepmerge" | "resnet18"
    create_head(backbone_name, feature_dim, bottleneck_dim=256) -> ClassifierHead
    create_classifier(backbone_name, bottleneck_dim=256) -> Classifier
    Classifier.features(x) / .forward(x) / .forward_with_features(x)
    DomainClassifier(in_dim, hidden=1024, dropout=0.5)
    GradientReversal(coeff) / grad_reverse(x, coeff)
"""

from models.backbones import (
    BACKBONES,
    Backbone,
    DeepMergeBackbone,
    ResNet18Backbone,
    UnknownNameError,
    backbone_names,
    create_backbone,
    register_backbone,
)
from models.grl import GradientReversal, GradientReverseFunction, grad_reverse
from models.heads import (
    Classifier,
    ClassifierHead,
    DomainClassifier,
    create_classifier,
    create_head,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "Classifier",
    "ClassifierHead",
    "DeepMergeBackbone",
    "DomainClassifier",
    "GradientReversal",
    "GradientReverseFunction",
    "ResNet18Backbone",
    "UnknownNameError",
    "backbone_names",
    "create_backbone",
    "create_classifier",
    "create_head",
    "grad_reverse",
    "register_backbone",
]
