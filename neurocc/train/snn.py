"""Directly trained spiking networks: build, train with BPTT and a surrogate gradient, export the one-step ONNX.

Two recipes, the same small CNN (``bntt_cnn``, ``srif_cnn``; ``ann_cnn`` is its ReLU twin for conversion):

* BNTT, Kim & Panda, "Revisiting Batch Normalization for Training Low-latency Deep SNNs from Scratch"
  (../shared/papers/bntt-batchnorm-through-time.txt §3): Conv → BNTT → LIF. BNTT is a batch norm with its own
  γ_t and statistics per time step and no β, u_t = λ·u_{t−1} + γ_t·(Σ w·o_t − μ_t)/sqrt(σ_t² + ε) (eq. 9;
  Algorithm 1). The authors' code (github.com/Intelligent-Computing-Lab-Yale/BNTT-Batch-Normalization-Through-
  Time, model.py and README) uses leak λ = 0.95 for CIFAR-10 at 25 steps, threshold 1, reset by subtraction
  (the paper's "soft reset", §3.1), ε = 1e-4, bias-free convolutions and Xavier-uniform weights of gain 2;
  ``bntt_cnn`` does the same.
* SRIF, "Soft Reset IF" with the membrane potential rectifier (MPR) (../shared/papers/srif-soft-reset-if.txt,
  §3.1-3.2): Conv → BN → IF without leak, reset by subtracting the spike value, MPR in the spike function.

The output layer (a Linear) emits no spikes: it accumulates its input over the steps without leak (bntt §3.1,
Algorithm 2 line 9), so the prediction after T steps is argmax Σ_{t≤T} logits_t, and training minimises the
cross entropy of that sum divided by T (eq. 5; the authors' code divides by T).

Inputs are fed unchanged at every step (direct input), not as Poisson trains (BNTT's code); the ONNX form is
the one-step graph of neurocc's trained-SNN spec (``neurocc.Spike``, ``neurocc.BNTT`` in domain "neurocc").
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn
from torch.nn import functional as F

from neurocc.errors import NeuroccError
from neurocc.fileio import atomic_write
from neurocc.train.heads import ArrayLike, _evaluating, _optimizer, _tensor

log = logging.getLogger(__name__)

SURROGATE_ALPHA = 0.3        # α of bntt eq. 8, "a damping factor for back-propagated gradients"
MPR_SCALE = 2.0 ** (-2 / 3)  # 1 / (2·(1/2)^{1/3}), the MPR's factor on [0, 1] (srif §3.2)
MPR_SLOPE_MAX = 3.0          # our cap on φ', which is unbounded at the threshold (see ``SpikeFunction``)
ONNX_OPSET = 17
SPIKE_DOMAIN = "neurocc"
RESETS = ("subtract", "zero")
COMPARES = (">=", ">")


# ---- the spike and its surrogate gradient ----

def mpr(x: torch.Tensor) -> torch.Tensor:
    """The membrane potential rectifier φ (srif §3.2), written around the threshold: ψ(x) = φ(x + ½) − ½.

    SRIF's potential u is measured in spike values with the threshold at V_th = ½; here x = (V − θ)/θ is the
    distance to the threshold in units of θ, so u = x + ½ (see ``srif_cnn`` for why that is the same neuron).
    The paper's φ (the text copy lost it; ../shared/papers/README.md gives the original's form):

        φ(u) = 1 − (1 − u)^{1/3}                               u < 0
        φ(u) = 2^{−2/3}·sign(u − ½)·|u − ½|^{1/3} + ½           0 ≤ u ≤ 1
        φ(u) = u                                                u > 1

    It is continuous (φ(0) = 0, φ(½) = ½, φ(1) = 1) and strictly increasing, pulling potentials towards the
    spike values 0 and 1 ("spike-approaching"); as ψ(x) has the sign of x exactly, also in floating point, a
    spike ψ(x) ≥ 0 is the spike x ≥ 0, i.e. V ≥ θ ("firing-invariance")."""
    left = 0.5 - (0.5 - x).clamp(min=1.0).pow(1 / 3)
    middle = MPR_SCALE * torch.sign(x) * x.abs().pow(1 / 3)
    return torch.where(x < -0.5, left, torch.where(x > 0.5, x, middle))


def _mpr_slope(x: torch.Tensor) -> torch.Tensor:
    """ψ'(x) = φ'(x + ½), capped at ``MPR_SLOPE_MAX``: (1 − u)^{−2/3}/3 below 0, 2^{−2/3}/3·|u − ½|^{−2/3} on
    [0, 1] (1/3 at both ends, infinite at the threshold), 1 above 1."""
    left = (0.5 - x).clamp(min=1.0).pow(-2 / 3) / 3
    middle = MPR_SCALE / 3 * x.abs().clamp(min=torch.finfo(x.dtype).tiny).pow(-2 / 3)
    return torch.where(x < -0.5, left, torch.where(x > 0.5, torch.ones_like(x), middle)).clamp(max=MPR_SLOPE_MAX)


class SpikeFunction(torch.autograd.Function):
    """s = Θ(x) of the threshold distance x = (V − θ)/θ, with the surrogate gradient of bntt eq. 8.

    Forward: s = 1 where x ≥ 0 (x > 0 with ``strict``), else 0, which is V ≥ θ (V > θ) exactly. With ``mpr``
    the step function reads the rectified potential, s = Θ(ψ(x)) (srif Algorithm 1, steps 3-4): the same
    spikes (firing-invariance), a different gradient.

    Backward: the step's derivative is replaced by the piecewise-linear (triangle) surrogate of bntt eq. 8,
    ∂s/∂V = α·max(0, 1 − |(V − θ)/θ|)/θ (the authors' code applies it to V/θ − 1, as here; the ``/θ`` is the
    chain rule from V to x, done by the caller's division). α damps gradients that are summed over all steps
    (0.3 in the paper). With ``mpr`` the surrogate sits on the rectified potential and is chained through the
    rectifier, α·max(0, 1 − |ψ(x)|)·ψ'(x): the gradient concentrates near the threshold, where ψ is steep.
    ψ' grows as |x|^{−2/3} there (integrable, but a potential landing next to the threshold would send an
    arbitrarily large gradient); the paper does not say how it bounds it; we cap ψ' at ``MPR_SLOPE_MAX``
    (reached within |x| < 0.019)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, rectify: bool, strict: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha, ctx.rectify = alpha, rectify
        r = mpr(x) if rectify else x
        return (r > 0 if strict else r >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, = ctx.saved_tensors
        if ctx.rectify:
            surrogate = ctx.alpha * (1 - mpr(x).abs()).clamp(min=0) * _mpr_slope(x)
        else:
            surrogate = ctx.alpha * (1 - x.abs()).clamp(min=0)
        return grad * surrogate, None, None, None


class SpikingNeuron(nn.Module):
    """A layer of (leaky) integrate-and-fire neurons; ``forward(x)`` is one time step, as ``neurocc.Spike``:

        V ← λ·V + x ;   s = (V ≥ θ)  (or V > θ) ;   V ← V − θ·s  ("subtract")  or  V ← 0 where s ("zero")

    with V(0) = v0·θ (bntt eq. 4 and §3.1; srif §3.1). The potential is held between calls; ``reset_state``
    (which ``SpikingNet`` calls at the start of every input) starts a new one. The reset is not
    differentiated through (the authors' BNTT code builds it from a mask); ``alpha`` and ``mpr`` shape the
    surrogate gradient only (``SpikeFunction``), never the spikes."""

    def __init__(self, threshold: float = 1.0, leak: float = 1.0, reset: str = "subtract", compare: str = ">=",
                 v0: float = 0.0, mpr: bool = False, alpha: float = SURROGATE_ALPHA):
        super().__init__()
        if not threshold > 0:
            raise NeuroccError(f"the threshold must be > 0, got {threshold}")
        if not 0 < leak <= 1:
            raise NeuroccError(f"the leak must be in (0, 1], got {leak}")
        if reset not in RESETS:
            raise NeuroccError(f"reset must be one of {RESETS}, got {reset!r}")
        if compare not in COMPARES:
            raise NeuroccError(f"compare must be one of {COMPARES}, got {compare!r}")
        self.threshold, self.leak, self.reset, self.compare = float(threshold), float(leak), reset, compare
        self.v0, self.mpr, self.alpha = float(v0), bool(mpr), float(alpha)
        self.v: Optional[torch.Tensor] = None

    def reset_state(self) -> None:
        self.v = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        if self.v is None:
            self.v = torch.full_like(current, self.v0 * self.threshold)
        v = self.leak * self.v + current
        s = SpikeFunction.apply((v - self.threshold) / self.threshold, self.alpha, self.mpr, self.compare == ">")
        fired = s.detach()
        self.v = v - self.threshold * fired if self.reset == "subtract" else torch.where(fired > 0, 0.0, v)
        return s

    def extra_repr(self) -> str:
        return (f"threshold={self.threshold}, leak={self.leak}, reset={self.reset!r}, compare={self.compare!r}, "
                f"v0={self.v0}, mpr={self.mpr}, alpha={self.alpha}")


class BNTT(nn.Module):
    """Batch normalisation through time (bntt eq. 9, Algorithm 1): per step t its own γ_t and statistics, no β.

    ``forward(x, t)`` (t = 1, 2, ...) uses row t' = min(t, S) − 1 of ``gamma``, ``running_mean`` and
    ``running_var`` (each S × C; past the S trained steps the last row holds, as ``neurocc.BNTT``):
    y = γ_t'·(x − μ)/sqrt(σ² + ε) per channel (axis 1 of N×C×H×W or N×C). Training normalises by the batch's
    own mean and (biased) variance at that step and moves row t' of the running statistics towards them by
    ``momentum`` (Algorithm 1 lines 6-7); as in the authors' code, which keeps one ``nn.BatchNorm2d`` per step,
    the running variance takes the unbiased batch variance (PyTorch's convention). Evaluation uses the
    running statistics. γ starts at 1."""

    def __init__(self, channels: int, steps: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if channels < 1 or steps < 1:
            raise NeuroccError(f"BNTT needs at least one channel and one step, got {channels} and {steps}")
        self.channels, self.steps, self.eps, self.momentum = channels, steps, float(eps), float(momentum)
        self.gamma = nn.Parameter(torch.ones(steps, channels))
        self.register_buffer("running_mean", torch.zeros(steps, channels))
        self.register_buffer("running_var", torch.ones(steps, channels))

    def row(self, t: int) -> int:
        """The 0-based row used at step t (1-based): min(t, S) − 1."""
        if t < 1:
            raise NeuroccError(f"time steps count from 1, got {t}")
        return min(t, self.steps) - 1

    def forward(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if self.training and t > self.steps:
            raise NeuroccError(f"BNTT has statistics for {self.steps} steps; it cannot train at step {t}")
        i = self.row(t)
        return F.batch_norm(x, self.running_mean[i], self.running_var[i], self.gamma[i], None, self.training,
                            self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.channels}, steps={self.steps}, eps={self.eps}, momentum={self.momentum}"


# ---- the network ----

_STATELESS = (nn.Conv2d, nn.Linear, nn.AvgPool2d, nn.Flatten, nn.BatchNorm2d, nn.BatchNorm1d)
_TEMPORAL = (SpikingNeuron, BNTT)


class SpikingNet(nn.Module):
    """A chain of layers run for T steps on an input fed unchanged at every step; the last layer (a Linear)
    gives logits_t at each step and the output layer accumulates them without leak (bntt §3.1).

    Layers: ``nn.Conv2d``, ``nn.Linear``, ``nn.AvgPool2d``, ``nn.Flatten``, ``nn.BatchNorm2d``/``1d``
    (time-invariant: one set of statistics for every step), ``BNTT`` and ``SpikingNeuron``. ``steps`` is the
    number of steps trained with (and the BNTT layers' S).

    The network runs layer by layer over all steps at once, which gives the same result as step by step
    since no layer feeds back: a stateless layer sees the T·N step-inputs as one batch (so, in training, a
    time-invariant BN normalises over the batch and all steps together, the statistics of the whole spike
    train, as the tdBN that SRIF uses), a BNTT or a neuron layer goes through the steps in order. The layers
    in front of the first BNTT or neuron see the same input at every step and run once."""

    def __init__(self, layers: Sequence[nn.Module], steps: int):
        super().__init__()
        layers = list(layers)
        for layer in layers:
            if not isinstance(layer, _STATELESS + _TEMPORAL):
                raise NeuroccError(f"a SpikingNet cannot hold {type(layer).__name__}; use Conv2d, Linear, "
                                   "AvgPool2d, Flatten, BatchNorm2d/1d, BNTT or SpikingNeuron")
        if not layers or not isinstance(layers[-1], nn.Linear):
            raise NeuroccError("a SpikingNet ends in the output layer, an nn.Linear")
        if len({id(m) for m in layers}) != len(layers):
            raise NeuroccError("a layer module appears twice in the SpikingNet; each layer needs its own")
        if steps < 1:
            raise NeuroccError(f"steps must be at least 1, got {steps}")
        for layer in layers:
            if isinstance(layer, BNTT) and layer.steps != steps:
                raise NeuroccError(f"a BNTT layer has {layer.steps} steps of statistics, the net {steps}")
        self.layers = nn.ModuleList(layers)
        self.steps = steps

    def step_logits(self, x: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:
        """The output layer's input at every step, T × N × classes (T = ``steps``, default the trained
        steps); ``.sum(0)`` is the accumulated output, ``.cumsum(0)`` the accumulated output after each step."""
        steps = self.steps if steps is None else steps
        if steps < 1:
            raise NeuroccError(f"steps must be at least 1, got {steps}")
        for layer in self.layers:
            if isinstance(layer, SpikingNeuron):
                layer.reset_state()
        first = next((i for i, m in enumerate(self.layers) if isinstance(m, _TEMPORAL)), len(self.layers))
        h = x
        for layer in self.layers[:first]:
            h = layer(h)
        seq = h.unsqueeze(0).expand(steps, *h.shape)
        for layer in self.layers[first:]:
            seq = self._over_steps(layer, seq)
        return seq

    @staticmethod
    def _over_steps(layer: nn.Module, seq: torch.Tensor) -> torch.Tensor:
        """Apply ``layer`` to T × N × ... inputs: step by step for BNTT and neurons, as one batch otherwise."""
        if isinstance(layer, BNTT):
            return torch.stack([layer(h, t) for t, h in enumerate(seq.unbind(0), start=1)])
        if isinstance(layer, SpikingNeuron):
            return torch.stack([layer(h) for h in seq.unbind(0)])
        return layer(seq.flatten(0, 1)).unflatten(0, seq.shape[:2])

    def forward(self, x: torch.Tensor, steps: Optional[int] = None) -> torch.Tensor:
        """Σ_{t=1..T} logits_t, N × classes: the output layer's membrane potential after T steps."""
        return self.step_logits(x, steps).sum(0)


# ---- one architecture, three ways ----

def _cnn_layers(in_channels: int, side: int, classes: int, widths: Sequence[int], activation) -> list:
    """[Conv 3×3 (no bias) → *activation(width) → AvgPool 2×2] per width, then Flatten → Linear."""
    layers, cin = [], in_channels
    for width in widths:
        layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), *activation(width), nn.AvgPool2d(2)]
        cin, side = width, side // 2
    return layers + [nn.Flatten(), nn.Linear(cin * side * side, classes)]


def bntt_cnn(in_channels: int = 1, side: int = 28, classes: int = 10, widths: Sequence[int] = (16, 32),
             steps: int = 25, leak: float = 0.95, alpha: float = SURROGATE_ALPHA) -> SpikingNet:
    """Conv → BNTT → LIF blocks with average pooling, then the accumulating output layer (bntt §3, Fig. 2).

    As the authors' code for CIFAR-10 (25 steps): λ = 0.95, θ = 1, reset by subtraction, BNTT ε = 1e-4,
    weights Xavier-uniform with gain 2, surrogate α = 0.3 (eq. 8). Their code fires on V > θ; we keep the
    spec's default V ≥ θ (the two differ only for a potential exactly at θ). Pooling is average pooling (the
    paper's VGG9 has only average pools; a max pool has no clean spiking form here). Seed torch first."""
    def activation(width):
        return [BNTT(width, steps, eps=1e-4), SpikingNeuron(1.0, leak, "subtract", alpha=alpha)]
    net = SpikingNet(_cnn_layers(in_channels, side, classes, widths, activation), steps)
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight, gain=2)
    return net


def srif_cnn(in_channels: int = 1, side: int = 28, classes: int = 10, widths: Sequence[int] = (16, 32),
             steps: int = 4, alpha: float = 1.0) -> SpikingNet:
    """Conv → BN → SRIF (soft-reset IF, with MPR) blocks with average pooling, then the accumulating output.

    SRIF (srif §3.1) fires when H_t = U_{t−1} + X_t reaches V_th = ½ and then subtracts the spike's value, 1:
    U_t = H_t − O_t (the text's Fig. 2 example, inputs 1.5, 1.2, 1.5, 0.9, 1.4 × V_th giving three spikes,
    holds only with this reset; subtracting V_th would give five). neurocc.Spike resets by its threshold, so
    the same neuron is θ = 1 with V(0) = ½: V = H + ½, V ≥ 1 ⇔ H ≥ ½, both subtract 1. No leak (IF).
    BN is the ordinary, time-invariant one (the paper uses tdBN, also one set of statistics for all steps);
    it exports as BatchNormalization, which neurocc folds. ``alpha`` is the surrogate's height: with a few
    steps there is little to damp, so 1 rather than BNTT's 0.3 for 25 steps. Seed torch first."""
    def activation(width):
        return [nn.BatchNorm2d(width), SpikingNeuron(1.0, 1.0, "subtract", v0=0.5, mpr=True, alpha=alpha)]
    return SpikingNet(_cnn_layers(in_channels, side, classes, widths, activation), steps)


def ann_cnn(in_channels: int = 1, side: int = 28, classes: int = 10, widths: Sequence[int] = (16, 32)
            ) -> nn.Sequential:
    """The same layers with BN → ReLU in place of the spiking blocks: the ANN neurocc converts."""
    return nn.Sequential(*_cnn_layers(in_channels, side, classes, widths,
                                      lambda width: [nn.BatchNorm2d(width), nn.ReLU()]))


# ---- training and prediction ----

def train_snn(model: SpikingNet, x: ArrayLike, y: ArrayLike, steps: Optional[int] = None, epochs: int = 1, *,
              lr: float = 1e-3, batch_size: int = 64, optimizer: str = "adam", weight_decay: float = 0.0,
              cosine: bool = True, seed: int = 0, progress: bool = False) -> SpikingNet:
    """Train with backpropagation through time: cross entropy of the accumulated output / T (bntt eq. 5-6).

    ``steps`` defaults to the model's trained steps (a BNTT model cannot train beyond them). ``optimizer`` is
    "adam" or "sgd" (Nesterov momentum 0.9); ``cosine`` anneals the learning rate to 0 over the epochs.
    ``seed`` fixes the shuffling, so a run repeats on the same machine. ``progress`` shows a tqdm bar over
    the batches. Logs each epoch's mean loss and training accuracy; returns the model in eval mode."""
    x, y = _tensor(x), torch.as_tensor(np.asarray(y), dtype=torch.int64)
    if len(x) != len(y) or len(x) == 0:
        raise NeuroccError(f"need as many labels as inputs, and some: got {len(x)} inputs and {len(y)} labels")
    if epochs < 1:
        raise NeuroccError(f"epochs must be at least 1, got {epochs}")
    steps = model.steps if steps is None else steps
    torch.manual_seed(seed)
    opt = _optimizer(model, optimizer, lr, weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) if cosine else None
    for epoch in range(epochs):
        batches = torch.randperm(len(x)).split(batch_size)
        if progress:
            from tqdm import tqdm
            batches = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch")
        loss, accuracy = _train_epoch(model, x, y, steps, opt, batches)
        if sched is not None:
            sched.step()
        log.info("epoch %d: loss %.4f, training accuracy %.4f", epoch, loss, accuracy)
    return model.eval()


def _train_epoch(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, steps: int, opt: torch.optim.Optimizer,
                 batches) -> tuple:
    """One pass over the batches; the mean loss and the training accuracy (of the accumulated output)."""
    model.train()
    loss_sum, correct = 0.0, 0
    for idx in batches:
        out = model(x[idx], steps) / steps
        loss = F.cross_entropy(out, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(idx)
        correct += int((out.argmax(1) == y[idx]).sum())
        if hasattr(batches, "set_postfix"):                  # a tqdm bar (``progress``)
            batches.set_postfix(loss=f"{loss.item():.3f}")
    return loss_sum / len(x), correct / len(x)


def snn_predictions(model: SpikingNet, x: ArrayLike, steps: int, batch_size: int = 64) -> np.ndarray:
    """N × steps class predictions: column T − 1 is argmax Σ_{t≤T} logits_t, the prediction after T steps
    (eval mode; ties go to the lowest class index, numpy's and torch's argmax). A batch holds every step's
    activations at once (steps × ``batch_size`` inputs per layer), so keep ``batch_size`` modest."""
    x = _tensor(x)
    with _evaluating(model):
        preds = [model.step_logits(xb, steps).cumsum(0).argmax(-1).T for xb in x.split(batch_size)]
    return torch.cat(preds).numpy()


# ---- ONNX export ----

def _init(name: str, tensor: torch.Tensor) -> onnx.TensorProto:
    return numpy_helper.from_array(tensor.detach().cpu().numpy().astype(np.float32), name)


def _pair(v) -> list:
    return list(v) if isinstance(v, (tuple, list)) else [v, v]


def _conv(m: nn.Conv2d, name: str, x: str, y: str) -> tuple:
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        raise NeuroccError(f"{name}: only numeric zero padding exports, got {m.padding!r}/{m.padding_mode!r}")
    ph, pw = m.padding
    inits = [_init(f"{name}.weight", m.weight)] + ([_init(f"{name}.bias", m.bias)] if m.bias is not None else [])
    node = helper.make_node("Conv", [x] + [i.name for i in inits], [y], name=name,
                            kernel_shape=list(m.kernel_size), strides=list(m.stride), pads=[ph, pw, ph, pw],
                            dilations=list(m.dilation), group=m.groups)
    return [node], inits


def _linear(m: nn.Linear, name: str, x: str, y: str) -> tuple:
    inits = [_init(f"{name}.weight", m.weight)] + ([_init(f"{name}.bias", m.bias)] if m.bias is not None else [])
    return [helper.make_node("Gemm", [x] + [i.name for i in inits], [y], name=name, transB=1)], inits


def _avgpool(m: nn.AvgPool2d, name: str, x: str, y: str) -> tuple:
    if m.divisor_override is not None:
        raise NeuroccError(f"{name}: AvgPool2d with divisor_override does not export")
    stride = m.kernel_size if m.stride is None else m.stride
    ph, pw = _pair(m.padding)
    return [helper.make_node("AveragePool", [x], [y], name=name, kernel_shape=_pair(m.kernel_size),
                             strides=_pair(stride), pads=[ph, pw, ph, pw], ceil_mode=int(m.ceil_mode),
                             count_include_pad=int(m.count_include_pad))], []


def _flatten(m: nn.Flatten, name: str, x: str, y: str) -> tuple:
    if m.start_dim != 1 or m.end_dim != -1:
        raise NeuroccError(f"{name}: only Flatten(1, -1) exports")
    return [helper.make_node("Flatten", [x], [y], name=name, axis=1)], []


def _batchnorm(m: nn.modules.batchnorm._BatchNorm, name: str, x: str, y: str) -> tuple:
    """Standard BatchNormalization on the running statistics (neurocc folds it into the convolution)."""
    if m.running_mean is None:
        raise NeuroccError(f"{name}: a BatchNorm without running statistics does not export")
    ones, zeros = torch.ones_like(m.running_mean), torch.zeros_like(m.running_mean)
    inits = [_init(f"{name}.weight", m.weight if m.affine else ones),
             _init(f"{name}.bias", m.bias if m.affine else zeros),
             _init(f"{name}.running_mean", m.running_mean), _init(f"{name}.running_var", m.running_var)]
    return [helper.make_node("BatchNormalization", [x] + [i.name for i in inits], [y], name=name,
                             epsilon=m.eps)], inits


def _bntt(m: BNTT, name: str, x: str, y: str) -> tuple:
    """neurocc.BNTT(x, gamma, mean, var), each S × C, attribute epsilon (bntt eq. 9)."""
    inits = [_init(f"{name}.gamma", m.gamma), _init(f"{name}.running_mean", m.running_mean),
             _init(f"{name}.running_var", m.running_var)]
    return [helper.make_node("BNTT", [x] + [i.name for i in inits], [y], name=name, domain=SPIKE_DOMAIN,
                             epsilon=m.eps)], inits


def _spike(m: SpikingNeuron, name: str, x: str, y: str) -> tuple:
    """neurocc.Spike(x) with the neuron's threshold, leak, reset, compare and v0 (MPR needs nothing: it does
    not change the spikes)."""
    return [helper.make_node("Spike", [x], [y], name=name, domain=SPIKE_DOMAIN, threshold=m.threshold,
                             leak=m.leak, reset=m.reset, compare=m.compare, v0=m.v0)], []


_EXPORTERS = {nn.Conv2d: _conv, nn.Linear: _linear, nn.AvgPool2d: _avgpool, nn.Flatten: _flatten,
              nn.BatchNorm2d: _batchnorm, nn.BatchNorm1d: _batchnorm, BNTT: _bntt, SpikingNeuron: _spike}


def snn_onnx(model: SpikingNet, sample_shape: Sequence[int], method: str) -> onnx.ModelProto:
    """The one-step ONNX graph of ``model`` (neurocc's trained-SNN form), checked by onnx's checker.

    Input "x" is N × ``sample_shape`` (one sample's shape, without the batch axis; N symbolic), fed unchanged
    at every step; output "logits" is the output layer's input at one step (a Gemm). Initializers are named
    as in ``model.state_dict()``. Metadata: ``neurocc.time_steps`` = the trained steps, ``neurocc.method``."""
    nodes, inits, x = [], [], "x"
    last = len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        y = "logits" if i == last else f"h{i}"
        new_nodes, new_inits = _EXPORTERS[type(layer)](layer, f"layers.{i}", x, y)
        nodes += new_nodes
        inits += new_inits
        x = y
    graph = helper.make_graph(
        nodes, f"{method}_snn_step",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *map(int, sample_shape)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", model.layers[last].out_features])],
        inits)
    proto = helper.make_model(graph, producer_name="neurocc.train",
                              opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                             helper.make_opsetid(SPIKE_DOMAIN, 1)])
    proto.ir_version = 8
    helper.set_model_props(proto, {"neurocc.time_steps": str(model.steps), "neurocc.method": method})
    onnx.checker.check_model(proto)
    return proto


def export_snn_onnx(model: SpikingNet, path: Union[str, Path], sample_shape: Sequence[int], method: str) -> Path:
    """Write ``snn_onnx(model, sample_shape, method)`` to ``path`` atomically (a temporary file, renamed)."""
    return atomic_write(path, snn_onnx(model, sample_shape, method).SerializeToString())
