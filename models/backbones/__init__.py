"""Backbones, one module each; every module registers its ``BackboneSpec``.

:func:`models.registry.backbone_specs` imports every module of this package, so adding a
backbone is adding one file here (its network and its spec) plus its tests.
"""
