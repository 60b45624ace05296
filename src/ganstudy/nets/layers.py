"""Layers whose parameters carry a leading member dimension K.

An ensemble of K members is K independent networks evaluated as one: linear layers are batched
matrix products, convolutions are grouped convolutions with one group per member, and batch norm
normalises every (member, channel) pair with its own statistics, so members never interact.
A solo run is simply K = 1.

Two activation layouts are used, each the natural one for its operation:

* features ``(K, B, F)`` for linear layers (``torch.baddbmm``);
* images ``(B, K * C, H, W)`` for convolutions (``groups=K``) and 2D batch norm.

:class:`ToImages` and :class:`ToFeatures` convert between them; at K = 1 both are free views.
Every parameter and buffer has shape ``(K, ...)``, so member ``k`` of any state is ``t[k]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MemberModule(nn.Module):
    """Base class: ``members`` is K, and every parameter/buffer has a leading K dimension."""

    def __init__(self, members: int):
        super().__init__()
        self.members = members

    def fan_in(self) -> int:
        """The fan-in PyTorch's default initialisation uses for this layer's weight."""
        raise NotImplementedError

    def init_member(self, k: int, generator: torch.Generator, scheme: str = "dcgan") -> None:
        """Initialise member ``k`` by ``scheme`` (a key of :data:`INIT_SCHEMES`).

        dcgan: weights N(0, 0.02), biases 0 (Radford et al. 2016).
        pytorch: weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), which is what
        ``nn.Linear``/``nn.Conv2d`` draw by default (kaiming_uniform with a = sqrt(5) gives the
        same bound); ConvTranspose2d's fan-in is PyTorch's, computed from its weight's second
        dimension. A layer built with ``bias=False`` has no bias parameter, so nothing is drawn
        for one (the fan-in depends on the weight alone).
        """
        with torch.no_grad():
            bound = 1.0 / self.fan_in() ** 0.5 if scheme == "pytorch" else 0.0
            for name, param in self.named_parameters(recurse=False):
                if scheme == "pytorch":
                    param[k].uniform_(-bound, bound, generator=generator)
                elif name == "weight":
                    param[k].normal_(0.0, 0.02, generator=generator)
                else:
                    param[k].zero_()


def _bias(module: MemberModule, enabled: bool, members: int, channels: int) -> None:
    """A bias parameter of shape (K, channels), or none at all (``module.bias`` is None)."""
    if enabled:
        module.bias = nn.Parameter(torch.zeros(members, channels))
    else:
        module.register_parameter("bias", None)


class Linear(MemberModule):
    """y[k] = x[k] @ W[k] + b[k]; x: (K, B, fan_in) -> (K, B, fan_out). ``bias=False``: no b."""

    def __init__(self, members: int, fan_in: int, fan_out: int, bias: bool = True):
        super().__init__(members)
        self.weight = nn.Parameter(torch.empty(members, fan_in, fan_out))
        _bias(self, bias, members, fan_out)

    def fan_in(self) -> int:
        return self.weight.shape[1]

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.shape[2] == 1:
            # A single output is a matrix-vector product, which BLAS computes with a different
            # kernel (and rounding) for one matrix than for a batch; a plain dot product keeps
            # every member bitwise equal to a solo network.
            out = (x * self.weight.transpose(1, 2)).sum(-1, keepdim=True)
            return out if self.bias is None else out + self.bias.unsqueeze(1)
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)


class Maxout(nn.Module):
    """The max over groups of ``pieces`` consecutive features: (..., F * pieces) -> (..., F).

    The pieces of unit j are features j * pieces, ..., j * pieces + pieces - 1, as in blocks'
    ``Maxout`` (a reshape to (..., F, pieces) and a max over the last axis), which PacGAN's
    2D-mixture discriminator uses. Works on features (K, B, F * pieces) and needs no member
    bookkeeping: it has no parameters and acts on each (member, sample) row alone.
    """

    def __init__(self, pieces: int):
        super().__init__()
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (-1, self.pieces)).amax(-1)


class LinearMaxout(nn.Module):
    """A maxout layer (Goodfellow et al. 2013): a :class:`Linear` to ``fan_out * pieces`` outputs,
    then the max over each unit's pieces (:class:`Maxout`); x: (K, B, fan_in) -> (K, B, fan_out).

    blocks' ``LinearMaxout``. Its parameters are the inner Linear's (``linear.weight`` of shape
    (K, fan_in, fan_out * pieces), ``linear.bias``), so the member initialisation covers them
    with the Linear's fan-in.
    """

    def __init__(self, members: int, fan_in: int, fan_out: int, pieces: int, bias: bool = True):
        super().__init__()
        self.linear = Linear(members, fan_in, fan_out * pieces, bias)
        self.maxout = Maxout(pieces)

    def forward(self, x: Tensor) -> Tensor:
        return self.maxout(self.linear(x))


def _flat(bias: Tensor | None) -> Tensor | None:
    return None if bias is None else bias.flatten()


class Conv2d(MemberModule):
    """Grouped convolution, one group per member; x: (B, K * C_in, H, W). ``bias=False``: none."""

    def __init__(
        self,
        members: int,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        bias: bool = True,
    ):
        super().__init__(members)
        self.weight = nn.Parameter(torch.empty(members, c_out, c_in, kernel, kernel))
        _bias(self, bias, members, c_out)
        self.stride, self.padding = stride, padding

    def fan_in(self) -> int:
        return self.weight[0, 0].numel()

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.flatten(0, 1)
        return F.conv2d(x, weight, _flat(self.bias), self.stride, self.padding, groups=self.members)


class ConvTranspose2d(MemberModule):
    """Grouped transposed convolution, one group per member; x: (B, K * C_in, H, W).

    Output size (H - 1) * stride - 2 * padding + kernel + output_padding, as
    ``nn.ConvTranspose2d``; ``bias=False``: no bias parameter.
    """

    def __init__(
        self,
        members: int,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        output_padding: int = 0,
        bias: bool = True,
    ):
        super().__init__(members)
        self.weight = nn.Parameter(torch.empty(members, c_in, c_out, kernel, kernel))
        _bias(self, bias, members, c_out)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    def fan_in(self) -> int:
        # PyTorch's fan-in of a transposed convolution's weight (c_in, c_out, kh, kw).
        return self.weight[0, 0].numel()

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.flatten(0, 1)
        return F.conv_transpose2d(
            x,
            weight,
            _flat(self.bias),
            self.stride,
            self.padding,
            self.output_padding,
            groups=self.members,
        )


class BatchNorm(MemberModule):
    """Batch norm with statistics per (member, channel).

    Accepts features (K, B, C) or images (B, K * C, H, W). Running statistics are updated with
    momentum 0.1 in training mode unless ``update_stats`` is False (used when sampling, so that
    drawing images never changes the model).
    """

    def __init__(self, members: int, channels: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__(members)
        self.weight = nn.Parameter(torch.ones(members, channels))
        self.bias = nn.Parameter(torch.zeros(members, channels))
        self.register_buffer("running_mean", torch.zeros(members, channels))
        self.register_buffer("running_var", torch.ones(members, channels))
        self.eps, self.momentum = eps, momentum
        self.update_stats = True

    def init_member(self, k: int, generator: torch.Generator, scheme: str = "dcgan") -> None:
        """dcgan: scale N(1, 0.02), shift 0; pytorch: scale 1, shift 0."""
        with torch.no_grad():
            if scheme == "pytorch":
                self.weight[k].fill_(1.0)
            else:
                self.weight[k].normal_(1.0, 0.02, generator=generator)
            self.bias[k].zero_()

    def _normalise(self, x: Tensor) -> Tensor:
        use_batch = self.training
        track = self.training and self.update_stats
        return F.batch_norm(
            x,
            self.running_mean.view(-1) if (track or not use_batch) else None,
            self.running_var.view(-1) if (track or not use_batch) else None,
            self.weight.flatten(),
            self.bias.flatten(),
            use_batch,
            self.momentum,
            self.eps,
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            # One path for every K, the solo run's too: the same calls whatever the ensemble.
            members, batch, channels = x.shape
            flat = _ContiguousGrad.apply(x).transpose(0, 1).reshape(batch, members * channels)
            out = self._normalise(flat).view(batch, members, channels).transpose(0, 1)
            # (K, B, C) in the layout of a solo run, so the next batched product and every
            # gradient reduction round exactly as they do for one member.
            return out.contiguous()
        return self._normalise(x)


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose backward makes the incoming gradient contiguous."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad.contiguous()


class ToImages(nn.Module):
    """(K, B, C * H * W) features -> (B, K * C, H, W) images."""

    def __init__(self, channels: int, size: int):
        super().__init__()
        self.channels, self.size = channels, size

    def forward(self, x: Tensor) -> Tensor:
        members, batch, _ = x.shape
        x = x.view(members, batch, self.channels, self.size, self.size).transpose(0, 1)
        return x.reshape(batch, members * self.channels, self.size, self.size)


class ToFeatures(nn.Module):
    """(B, K * C, H, W) images -> (K, B, C * H * W) features."""

    def __init__(self, members: int):
        super().__init__()
        self.members = members

    def forward(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        return x.reshape(batch, self.members, -1).transpose(0, 1)


def images_to_member_layout(x: Tensor) -> Tensor:
    """(K, B, C, H, W) -> (B, K * C, H, W), the layout of grouped convolutions."""
    members, batch, channels, height, width = x.shape
    return x.transpose(0, 1).reshape(batch, members * channels, height, width)


def member_layout_to_images(x: Tensor, members: int) -> Tensor:
    """(B, K * C, H, W) -> (K, B, C, H, W)."""
    batch, kc, height, width = x.shape
    return x.view(batch, members, kc // members, height, width).transpose(0, 1)


def init_members(
    module: nn.Module, k: int, generator: torch.Generator, scheme: str = "dcgan"
) -> None:
    """Initialise member ``k`` of every member layer, in module order, from one generator.

    The order of draws depends only on the architecture, never on K, so member ``k`` of an
    ensemble and a solo network initialised from the same generator state are identical.
    """
    for layer in module.modules():
        if isinstance(layer, MemberModule):
            layer.init_member(k, generator, scheme)
