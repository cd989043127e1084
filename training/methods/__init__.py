"""Domain-adaptation methods, one module each; every module registers its ``MethodSpec``.

:func:`training.registry.method_specs` imports every module of this package, so adding a
method is adding one file here (its transfer loss and its spec) plus its tests.
"""
