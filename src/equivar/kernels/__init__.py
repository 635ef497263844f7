"""Backends for the hot op, the tensor-product convolution (see :mod:`equivar.kernels.dispatch`).

``equivar.kernels.convolve`` runs a layer's convolution on the backend it asks for
(``equivar.kernels.conv`` runs a :class:`ConvSpec` on one resolved backend); models pick theirs
with the ``backend=`` option (``"auto"``, ``"e3nn"``, ``"dense"``, ``"fused_cpu"``, ``"triton"``,
``"cuequivariance"``) and show it in their repr. All backends compute the same numbers as the
e3nn reference, forward, backward and double backward (``tests/kernels``).
"""

from equivar._lazy import lazy_attributes

_WHERE = {
    "BACKENDS": "dispatch",
    "BackendFallbackWarning": "dispatch",
    "availability": "dispatch",
    "check_backend": "dispatch",
    "conv": "dispatch",
    "convolve": "dispatch",
    "resolve": "dispatch",
    "ConvSpec": "spec",
    "EdgeLayout": "layout",
    "cached_edge_layout": "layout",
    "edge_layout": "layout",
    "conv_reference": "reference",
    "fused_conv": "fused",
    "dense_conv": "dense",
}
__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_attributes(__name__, _WHERE, __all__)
