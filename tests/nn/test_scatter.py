"""Segment sums and means: values, empty segments, and the re-export that keeps
``equivar.nn.scatter`` (what blocks and heads import) the same functions the kernels use."""

import torch

import equivar.nn
from equivar.kernels import scatter as kernel_scatter
from equivar.nn.scatter import scatter_mean, scatter_sum


def test_sum_and_mean_onto_segments_with_an_empty_one(dtype):
    src = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=dtype)  # [n, 2]
    index = torch.tensor([2, 0, 2])
    want_sum = torch.tensor([[3.0, 4.0], [0.0, 0.0], [6.0, 8.0]], dtype=dtype)
    assert torch.equal(scatter_sum(src, index, 3), want_sum)
    want_mean = torch.tensor([[3.0, 4.0], [0.0, 0.0], [3.0, 4.0]], dtype=dtype)
    assert torch.equal(scatter_mean(src, index, 3), want_mean)  # segment 1 is empty: zero


def test_nn_re_exports_the_kernels_functions():
    assert scatter_sum is kernel_scatter.scatter_sum is equivar.nn.scatter_sum
    assert scatter_mean is kernel_scatter.scatter_mean is equivar.nn.scatter_mean
