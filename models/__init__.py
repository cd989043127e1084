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

#: Public name -> the module that defines it; imported on first use (PEP 562), so that
#: ``import models.registry`` (the specs, read by search problems and tables) does not load torch.
_EXPORTS = {
    "Backbone": "models.base",
    "BackboneSpec": "models.registry",
    "Classifier": "models.heads",
    "ClassifierHead": "models.heads",
    "DomainClassifier": "models.heads",
    "GradientReverseFunction": "models.grl",
    "Hyper": "models.registry",
    "UnknownNameError": "models.registry",
    "backbone_names": "models.registry",
    "backbone_specs": "models.registry",
    "create_classifier": "models.heads",
    "get_backbone": "models.registry",
    "grad_reverse": "models.grl",
    "register_backbone": "models.registry",
}


def __getattr__(name: str):
    """Import the module holding ``name`` when it is first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


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
