"""Intermediate-prediction (IP) heads: add them to a PyTorch model, train (or fit) them, export the ONNX.

Akagi & Awano, "Low Energy Inference of SNN via Bayesian Fusion" (../shared/papers/bayesian-fusion-
intermediate-heads.txt) §3.2 and §4.2: an IP head is global average pooling + a fully-connected layer attached
at an intermediate block; its class probabilities become the Beta prior of the final output's firing
probability (eq. 15-18). The heads are trained together with the network on

    loss = loss_final + τ(e)·loss_internal                                   (eq. 19)
    τ(e) = 0.01 + e/120·(C − 0.01), rising linearly from 0.01 to C            (eq. 20, over 120 epochs there)
    C    = FLOPs up to the intermediate output / FLOPs up to the final output (eq. 21)

so a head's loss weighs little at first (the backbone learns its features for the final classifier) and, by the
last epoch, as much as the share of the network the head's prediction costs. ``tau`` says how the schedule's
end points are read for E epochs.

The exported ONNX has the final classifier as output 0 and one output per head after it; neurocc's lowering
turns every graph output into a read-out population (``neurocc.passes.lower``), so the SNN reads the heads out
alongside the final output.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from neurocc.errors import NeuroccError
from neurocc.fileio import atomic_write

log = logging.getLogger(__name__)

TAU_START = 0.01          # τ at the first epoch (eq. 20)
FINAL_OUTPUT = "logits"   # the ONNX name of the final classifier's output (as examples/common.py exports it)

ArrayLike = Union[np.ndarray, torch.Tensor]


def head_name(block: str) -> str:
    """The name of the head on ``block`` (and of its ONNX output): "layer2.1" → "head_layer2_1"."""
    return "head_" + block.replace(".", "_")


def _module(model: nn.Module, block: str) -> nn.Module:
    """The submodule named ``block`` (a name from ``model.named_modules()``), or a one-line NeuroccError."""
    modules = dict(model.named_modules())
    if block == "":
        raise NeuroccError("block '' is the whole model, not an intermediate block")
    if block not in modules:
        close = difflib.get_close_matches(block, [n for n in modules if n], n=3)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise NeuroccError(f"the model has no block named {block!r}{hint}")
    return modules[block]


def _tensor(x: ArrayLike) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32)


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    """Run ``model`` in eval mode without gradients (BN on its running statistics), then restore its mode."""
    was_training = model.training
    try:
        with torch.no_grad():
            yield model.eval()
    finally:
        model.train(was_training)


class _Capture:
    """Forward hooks that keep the output of each named block during ``run`` (and ignore other passes).

    A block that runs more than once per forward (a ReLU module reused inside a residual block, say) has no
    single output to attach a head to, so it is refused rather than silently read at its last call."""

    def __init__(self, model: nn.Module, blocks: Sequence[str]):
        self.outputs: Optional[dict] = None          # a dict only while ``run`` runs
        self.handles = [_module(model, b).register_forward_hook(self._hook(b)) for b in blocks]

    def _hook(self, block: str):
        def keep(module, inputs, output):
            if self.outputs is None:
                return
            if block in self.outputs:
                raise NeuroccError(f"block {block!r} runs more than once per forward pass; "
                                   "attach the head to a module that runs once")
            self.outputs[block] = output
        return keep

    def run(self, model: nn.Module, x: torch.Tensor, blocks: Sequence[str]) -> tuple:
        """``model(x)`` and the outputs of ``blocks`` during it; a block that did not run is an error."""
        self.outputs = {}
        try:
            result = model(x)
            outputs = self.outputs
        finally:
            self.outputs = None
        missing = [b for b in blocks if b not in outputs]
        if missing:
            raise NeuroccError(f"block {missing[0]!r} does not run in the model's forward pass")
        return result, outputs

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _head(block: str, features: object, classes: int) -> nn.Module:
    """GAP + Linear(channels, classes) for N×C×H×W features, Linear(features, classes) for N×F ones."""
    if not isinstance(features, torch.Tensor) or features.dim() not in (2, 4):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise NeuroccError(f"block {block!r} outputs {shape}; a head needs N×C×H×W or N×F features")
    if features.dim() == 2:
        return nn.Linear(features.shape[1], classes)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(features.shape[1], classes))


def _pool_and_linear(head: nn.Module) -> tuple:
    """A head made by ``_head`` as (its pooling, identity for N×F features; its linear layer)."""
    return (head[:-1], head[-1]) if isinstance(head, nn.Sequential) else (nn.Identity(), head)


class HeadedModel(nn.Module):
    """A model with IP heads: ``forward(x)`` returns ``(final_logits, head_1_logits, ...)`` in ``blocks`` order.

    The backbone is left as it is; forward hooks on the blocks hand their outputs to the heads, so any model
    whose blocks are modules works (``nn.Sequential``, torchvision ResNets' ``layer1``…), and tracing for the
    ONNX export records the heads like any other op."""

    def __init__(self, backbone: nn.Module, blocks: Sequence[str], heads: Sequence[nn.Module]):
        super().__init__()
        self.backbone = backbone
        self.blocks = tuple(blocks)
        self.heads = nn.ModuleDict({head_name(b): h for b, h in zip(self.blocks, heads)})
        self._capture = _Capture(backbone, self.blocks)
        self.train(backbone.training)                 # a new module would train; keep the backbone's mode

    @property
    def head_names(self) -> tuple:
        return tuple(self.heads)

    def forward(self, x: torch.Tensor) -> tuple:
        final, features = self._capture.run(self.backbone, x, self.blocks)
        return (final, *(self.heads[head_name(b)](features[b]) for b in self.blocks))


def add_heads(model: nn.Module, blocks: Sequence[str], sample_input: ArrayLike,
              classes: Optional[int] = None) -> HeadedModel:
    """Attach an IP head (bayesian-fusion §3.2, Fig. 2) at each named block of ``model``.

    ``blocks`` are names from ``model.named_modules()``; a head reads the block's output. ``sample_input`` (a
    batch of one or more inputs) is run once to find each block's feature shape and, unless ``classes`` is
    given, the class count (the final output's second axis). Seed torch first for repeatable head weights."""
    if not blocks:
        raise NeuroccError("no blocks given to attach heads to")
    if len(set(blocks)) != len(blocks):
        raise NeuroccError(f"a block is named twice in {list(blocks)}")
    capture = _Capture(model, blocks)
    try:
        with _evaluating(model):
            final, features = capture.run(model, _tensor(sample_input), blocks)
    finally:
        capture.remove()
    if not isinstance(final, torch.Tensor) or final.dim() != 2:
        raise NeuroccError("the model's output must be N×classes logits to add heads to it")
    classes = final.shape[1] if classes is None else classes
    return HeadedModel(model, blocks, [_head(b, features[b], classes) for b in blocks])


_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates per sample of a convolution or linear layer, from its output's shape."""
    return module.weight[0].numel() * output[0].numel()    # weight[0]: in_channels / groups × kernel, or in_features


def head_cost_ratio(model: nn.Module, block: str, sample_input: ArrayLike) -> float:
    """C of eq. 21: FLOPs up to the intermediate output / FLOPs up to the final output, as a MAC ratio.

    FLOPs are the multiply-accumulates of the convolution and linear layers (BN, ReLU and pooling are not
    counted, as in the paper's FLOPs of a CNN), measured by one forward pass of ``sample_input`` with hooks.
    "Up to the block" means the layers that have run when the block's output is ready: for a chain that is the
    sub-network in front of the head; in a branching network a branch that runs earlier but does not feed the
    block would be counted too. For a ``HeadedModel`` the numerator also counts the head's own linear layer
    (the paper's small network ends at the intermediate output, not at the block), and the denominator is the
    backbone alone, without any head. Functional convolutions (``F.conv2d`` outside a module) are not seen."""
    backbone, head_macs = model, 0
    if isinstance(model, HeadedModel):
        if head_name(block) not in model.heads:
            raise NeuroccError(f"the model has no head on block {block!r} (heads on: {', '.join(model.blocks)})")
        backbone, head_macs = model.backbone, _pool_and_linear(model.heads[head_name(block)])[1].weight.numel()
    target = _module(backbone, block)
    counted = {"total": 0, "at_block": None}

    def count(module, inputs, output):
        counted["total"] += _macs(module, output)

    def mark(module, inputs, output):
        if counted["at_block"] is not None:
            raise NeuroccError(f"block {block!r} runs more than once per forward pass")
        counted["at_block"] = counted["total"]

    layers = [m for m in backbone.modules() if isinstance(m, _COUNTED)]
    handles = [m.register_forward_hook(count) for m in layers] + [target.register_forward_hook(mark)]
    try:
        with _evaluating(backbone):
            backbone(_tensor(sample_input)[:1])
    finally:
        for h in handles:
            h.remove()
    if counted["at_block"] is None:
        raise NeuroccError(f"block {block!r} does not run in the model's forward pass")
    if counted["total"] == 0:
        raise NeuroccError("the model has no convolution or linear layer to count FLOPs of")
    return (counted["at_block"] + head_macs) / counted["total"]


def tau(epoch: int, epochs: int, cost_ratio: float) -> float:
    """The weight τ(e) of a head's loss at ``epoch`` (0-based) of ``epochs`` (eq. 19-20).

    Eq. 20 reads τ(e) = 0.01 + e/120·(C − 0.01) for the paper's 120 epochs, "rising linearly from 0.01 to C";
    with e counted from 0 the last epoch would stop one step short of C, from 1 the first would start one step
    above 0.01. We take the text's endpoints: τ = 0.01 at the first epoch, C at the last,
    τ(e) = 0.01 + e/(E − 1)·(C − 0.01). A one-epoch run has only its end point, C."""
    if not 0 <= epoch < epochs:
        raise NeuroccError(f"epoch {epoch} is outside 0..{epochs - 1}")
    if epochs == 1:
        return float(cost_ratio)
    return TAU_START + epoch / (epochs - 1) * (cost_ratio - TAU_START)


@dataclass
class EpochLog:
    """One epoch of ``train_with_heads``: τ per head and the mean losses (cross entropy) over the epoch."""
    epoch: int
    tau: dict
    loss_final: float
    loss_heads: dict = field(default_factory=dict)


def _optimizer(model: nn.Module, name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise NeuroccError(f"unknown optimizer {name!r}; use 'adam' or 'sgd'")


def train_with_heads(model: HeadedModel, x: ArrayLike, y: ArrayLike, epochs: int, *, batch_size: int = 64,
                     lr: float = 1e-3, optimizer: str = "adam", weight_decay: float = 0.0, cosine: bool = True,
                     cost_ratios: Optional[dict] = None, seed: int = 0, progress: bool = False) -> list:
    """Train the backbone and its heads on loss_final + Σ_h τ_h(e)·loss_h (eq. 19), cross entropy each.

    τ_h follows eq. 20 (see ``tau``) up to C_h = ``cost_ratios[head name]``, measured by ``head_cost_ratio``
    (eq. 21) when not given. ``optimizer`` is "adam" or "sgd" (Nesterov momentum 0.9); ``cosine`` anneals the
    learning rate to 0 over the epochs. ``seed`` fixes the shuffling (and any dropout), so a run repeats on the
    same machine. ``progress`` shows a tqdm bar over the epochs. The model is left in eval mode; returns one
    ``EpochLog`` per epoch."""
    x, y = _tensor(x), torch.as_tensor(np.asarray(y), dtype=torch.int64)
    if len(x) != len(y) or len(x) == 0:
        raise NeuroccError(f"need as many labels as inputs, and some: got {len(x)} inputs and {len(y)} labels")
    if epochs < 1:
        raise NeuroccError(f"epochs must be at least 1, got {epochs}")
    if cost_ratios is None:
        cost_ratios = {head_name(b): head_cost_ratio(model, b, x[:1]) for b in model.blocks}
    missing = [h for h in model.head_names if h not in cost_ratios]
    if missing:
        raise NeuroccError(f"no cost ratio C given for head {missing[0]!r}")
    torch.manual_seed(seed)
    opt = _optimizer(model, optimizer, lr, weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs) if cosine else None
    epoch_range = range(epochs)
    if progress:
        from tqdm import tqdm
        epoch_range = tqdm(epoch_range, desc="train", unit="epoch")
    history = []
    for epoch in epoch_range:
        taus = {h: tau(epoch, epochs, cost_ratios[h]) for h in model.head_names}
        history.append(_train_epoch(model, x, y, opt, taus, batch_size, epoch))
        if sched is not None:
            sched.step()
        log.info("epoch %d: loss_final %.4f, heads %s", epoch, history[-1].loss_final,
                 {h: round(v, 4) for h, v in history[-1].loss_heads.items()})
        if progress:
            epoch_range.set_postfix(loss=f"{history[-1].loss_final:.3f}")
    model.eval()
    return history


def _train_epoch(model: HeadedModel, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, taus: dict,
                 batch_size: int, epoch: int) -> EpochLog:
    """One pass over shuffled mini-batches; the losses logged are the means over the epoch's samples."""
    model.train()
    sums = torch.zeros(1 + len(taus))
    weights = torch.tensor([1.0, *taus.values()])
    for idx in torch.randperm(len(x)).split(batch_size):
        losses = torch.stack([nn.functional.cross_entropy(out, y[idx]) for out in model(x[idx])])
        opt.zero_grad()
        (weights * losses).sum().backward()
        opt.step()
        sums += losses.detach() * len(idx)
    means = (sums / len(x)).tolist()
    return EpochLog(epoch=epoch, tau=taus, loss_final=means[0], loss_heads=dict(zip(taus, means[1:])))


def fit_linear_heads(model: nn.Module, blocks: Sequence[str], x: ArrayLike, y: ArrayLike, ridge: float = 1e-3,
                     batch_size: int = 512) -> HeadedModel:
    """Heads for a model trained without them: a ridge least-squares fit of each head's linear layer.

    The pooled features (GAP for N×C×H×W, as they are for N×F) of labelled calibration data ``x``, ``y`` are
    regressed onto one-hot labels: W = (FᵀF + ridge·n·I)⁻¹ FᵀY with an unpenalised bias. It differs from
    training the heads jointly (eq. 19-21) in two ways. The backbone is frozen, so the block's features are what
    the final classifier needed, not features that τ(e)·loss_head has pushed to be predictive on their own:
    expect a shallow fitted head to be weaker than a trained one. And the fit is of squared error, not cross
    entropy, so the head's outputs are scores, less calibrated as class probabilities than a trained head's (the
    Bayesian prior μ̂ of eq. 15 reads them as such). It needs no retraining and no training set, only a few
    thousand labelled images. The model keeps its mode (eval, normally: BN on its running statistics)."""
    x, y = _tensor(x), torch.as_tensor(np.asarray(y), dtype=torch.int64)
    headed = add_heads(model, blocks, x[:2])
    heads = {b: _pool_and_linear(headed.heads[head_name(b)]) for b in headed.blocks}
    pooled = {b: [] for b in headed.blocks}
    with _evaluating(headed):
        for xb in x.split(batch_size):
            features = headed._capture.run(model, xb, headed.blocks)[1]
            for b, (pool, _) in heads.items():
                pooled[b].append(pool(features[b]))
    for b, (_, linear) in heads.items():
        _ridge_fit(linear, torch.cat(pooled[b]), y, ridge)
    return headed


def _ridge_fit(linear: nn.Linear, features: torch.Tensor, y: torch.Tensor, ridge: float) -> None:
    """Set ``linear`` to the ridge least-squares map from ``features`` to one-hot ``y`` (float64 solve)."""
    f = torch.cat([features.double(), torch.ones(len(features), 1, dtype=torch.float64)], 1)
    target = nn.functional.one_hot(y, linear.out_features).double()
    penalty = ridge * len(f) * torch.eye(f.shape[1], dtype=torch.float64)
    penalty[-1, -1] = 0                                       # the bias is not shrunk
    w = torch.linalg.solve(f.T @ f + penalty, f.T @ target)
    with torch.no_grad():
        linear.weight.copy_(w[:-1].T)
        linear.bias.copy_(w[-1])


def accuracies(model: HeadedModel, x: ArrayLike, y: ArrayLike, batch_size: int = 512) -> dict:
    """Top-1 accuracy (eval mode) of the final output ("final") and of each head, keyed by name."""
    x, y = _tensor(x), torch.as_tensor(np.asarray(y), dtype=torch.int64)
    correct = torch.zeros(1 + len(model.head_names))
    with _evaluating(model):
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            correct += torch.tensor([float((out.argmax(1) == yb).sum()) for out in model(xb)])
    return dict(zip(("final", *model.head_names), (correct / len(x)).tolist()))


def export_onnx(model: HeadedModel, path: Union[str, Path], sample_input: ArrayLike,
                head_names: Optional[Sequence[str]] = None) -> Path:
    """Write ``model`` as ONNX: output 0 the final classifier ("logits"), then one output per head.

    ``head_names`` name the head outputs (default ``model.head_names``, e.g. "head_layer2"). The legacy
    TorchScript exporter without constant folding keeps BatchNormalization nodes for neurocc's own folding
    pass, as ``examples/common.py`` does; the batch axis is dynamic. The model is left in eval mode (the export
    traces BN on its running statistics). The file is written atomically."""
    names = list(model.head_names if head_names is None else head_names)
    if len(names) != len(model.head_names):
        raise NeuroccError(f"{len(names)} head names given for {len(model.head_names)} heads")
    outputs = [FINAL_OUTPUT, *names]
    if len(set(outputs)) != len(outputs):
        raise NeuroccError(f"output names must differ: {outputs}")
    buffer = io.BytesIO()
    torch.onnx.export(model.eval(), _tensor(sample_input)[:1], buffer, input_names=["x"], output_names=outputs,
                      dynamic_axes={n: {0: "N"} for n in ["x", *outputs]}, dynamo=False, do_constant_folding=False)
    return atomic_write(path, buffer.getvalue())
