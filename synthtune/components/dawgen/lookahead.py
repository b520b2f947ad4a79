"""One-step lookahead for DawGen's bi-level token weighting (Alg. 1).

The token weights W (produced by Φ_W) are trained so that *one* step of prompt tuning with the
weighted loss makes the prompts more discriminative:

    Q'(W) = U(Q, ∇_Q L_DawGen(Q; W))               (virtual step, graph kept)
    ∇_W  = ∂ L_disc(Q'(W)) / ∂W                    (meta-gradient, through the virtual step)

U is the update the real step of Q applies: :func:`optimizer_update` replays the generator
optimizer's own rule (SGD with momentum, Adam, AdamW) from its current state (momentum buffer,
moments, step count) as a differentiable function of the gradient, so Φ_W is trained for the update
that actually happens. :func:`virtual_step` is the plain SGD rule ``Q − α ∇_Q L``.

The virtual parameters Q' are plain tensors; the forward pass with them goes through
:func:`torch.func.functional_call`, so the module's own parameters are never replaced or mutated.

How each backward behaves under DDP
-----------------------------------
* Virtual step: ``torch.autograd.grad(L_DawGen, Q, create_graph=True)`` is *local*. It never
  triggers DDP's gradient hooks (it does not write ``.grad``), so nothing is all-reduced; every
  rank builds Q' from its own shard. Call :func:`meta_gradient` with the *unwrapped* module
  (``ddp.module``): functional_call on the DDP wrapper would run DDP's forward bookkeeping.
* W step: the meta-gradient of each rank only sees its own shard, so it must be averaged before
  the optimiser step of Φ_W. A ``.backward()`` through a DDP-wrapped Φ_W would do that; this
  module takes it with ``torch.autograd.grad`` (which bypasses DDP's hooks), so pass the
  *unwrapped* Φ_W, call ``meta_gradient(..., write_grad=True)`` and then
  :func:`all_reduce_grads` on Φ_W's parameters before ``optimizer_w.step()``.
* Real Q step: an ordinary ``loss.backward()`` of L_DawGen(Q; W) through the DDP-wrapped prompt
  module, which DDP all-reduces as usual. Detach W there (``weights.detach()``) so the prompt
  loss does not also write gradients into Φ_W.

The forward passes inside :func:`meta_gradient` run with the plain-math attention kernel: the
fused scaled-dot-product kernels (flash / CPU flash) have no double backward, which the
meta-gradient needs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.func import functional_call

from synthtune.errors import SynthtuneError

#: ``call_q(*args, **kwargs)`` runs the prompt module with a given set of parameters.
CallQ = Callable[..., Any]


def virtual_step(params: dict[str, Tensor], grads: dict[str, Tensor | None], lr: float) -> dict[str, Tensor]:
    """SGD-style virtual update ``Q' = Q − lr · ∇_Q L``, differentiable w.r.t. whatever ``grads`` depends on.

    Pass gradients computed with ``create_graph=True`` so that Q' keeps its dependence on W.

    Args:
        params: name → current parameter tensor.
        grads: name → gradient (``None`` for a parameter the loss does not use: it stays unchanged).
        lr: virtual step size α ≥ 0.
    """
    value = float(lr)
    if not math.isfinite(value) or value < 0:
        raise SynthtuneError(
            f"lookahead learning rate must be a finite number >= 0, got {lr!r}; pass e.g. inner_lr=0.1"
        )
    if set(grads) != set(params):
        missing = sorted(set(params) ^ set(grads))
        raise SynthtuneError(
            f"virtual_step: params and grads name different tensors ({missing}); pass one gradient per parameter"
        )
    # DawGen virtual step: Q' = Q − α ∇_Q L_DawGen(Q; W)
    return {name: p if grads[name] is None else p - value * grads[name] for name, p in params.items()}


#: ``update(params, grads) -> virtual params``: one differentiable update of the prompt parameters.
VirtualUpdate = Callable[[dict[str, Tensor], dict[str, "Tensor | None"]], dict[str, Tensor]]


def _group_of(optimizer: torch.optim.Optimizer, p: Tensor) -> dict[str, Any]:
    for group in optimizer.param_groups:
        if any(q is p for q in group["params"]):
            return group
    raise SynthtuneError("optimizer_update: a prompt parameter is not in the generator optimizer; "
                         "build the optimizer over the prompt module's parameters")


def _sgd_update(p: Tensor, g: Tensor, group: dict[str, Any], state: dict[str, Any], lr: float) -> Tensor:
    """torch.optim.SGD's step for one parameter, differentiable in ``g``."""
    d = g + group["weight_decay"] * p if group["weight_decay"] else g
    mu = group["momentum"]
    if mu:
        buf = state.get("momentum_buffer")
        # SGD momentum: b_t = μ b_{t−1} + (1 − dampening) g_t (b_1 = g_1)
        buf = d if buf is None else mu * buf + (1 - group["dampening"]) * d
        d = d + mu * buf if group["nesterov"] else buf
    return p - lr * d  # Q' = Q − η d


def _adam_update(p: Tensor, g: Tensor, group: dict[str, Any], state: dict[str, Any], lr: float,
                 decoupled: bool) -> Tensor:
    """torch.optim.Adam / AdamW's step for one parameter, differentiable in ``g``."""
    beta1, beta2 = group["betas"]
    wd = group["weight_decay"]
    if wd and decoupled:
        p = p * (1 - lr * wd)  # AdamW: decoupled weight decay
    elif wd:
        g = g + wd * p
    step = float(state["step"]) + 1 if "step" in state else 1.0
    m = state.get("exp_avg", torch.zeros_like(p))
    v = state.get("exp_avg_sq", torch.zeros_like(p))
    m = beta1 * m + (1 - beta1) * g  # m_t = β1 m_{t−1} + (1 − β1) g_t
    v = beta2 * v + (1 - beta2) * g * g  # v_t = β2 v_{t−1} + (1 − β2) g_t²
    bc1, bc2 = 1 - beta1 ** step, 1 - beta2 ** step
    # clamp: sqrt has an infinite derivative at 0 (a zero gradient coordinate would give NaN)
    denom = v.clamp_min(torch.finfo(v.dtype).tiny).sqrt() / math.sqrt(bc2) + group["eps"]
    return p - (lr / bc1) * m / denom  # Q' = Q − η m̂_t / (√v̂_t + ε)


def optimizer_update(optimizer: torch.optim.Optimizer, params: dict[str, Tensor], lr: float | None = None
                     ) -> VirtualUpdate:
    """The virtual update U that ``optimizer.step()`` would apply to ``params``, as a differentiable function.

    It reads the optimizer's hyper-parameters and current state (momentum buffer, Adam moments and
    step count) but changes neither; with the same gradient, ``U(params, grads)`` equals the
    parameters after ``optimizer.step()``.

    Args:
        optimizer: a ``torch.optim.SGD``, ``Adam`` or ``AdamW`` over (at least) ``params``.
        params: name → the real parameter tensors (the optimizer's state is keyed by them).
        lr: step size of the virtual step; ``None`` uses the optimizer's own (the faithful choice).
    """
    kinds = {torch.optim.SGD: "sgd", torch.optim.AdamW: "adamw", torch.optim.Adam: "adam"}
    kind = kinds.get(type(optimizer))
    if kind is None:
        raise SynthtuneError(f"no differentiable lookahead for {type(optimizer).__name__}; use SGD, Adam or AdamW "
                             f"as the generator optimizer")
    groups = {name: _group_of(optimizer, p) for name, p in params.items()}
    for group in groups.values():
        if group.get("maximize") or group.get("amsgrad"):
            raise SynthtuneError("the lookahead does not replay maximize or amsgrad; turn them off")

    def update(values: dict[str, Tensor], grads: dict[str, Tensor | None]) -> dict[str, Tensor]:
        if set(grads) != set(params) or set(values) != set(params):
            raise SynthtuneError("optimizer_update: params and grads name different tensors; "
                                 "pass one gradient per prompt parameter")
        out = {}
        for name, value in values.items():
            g = grads[name]
            group, state = groups[name], optimizer.state.get(params[name], {})
            step_lr = float(group["lr"] if lr is None else lr)
            if g is None:
                out[name] = value
            elif kind == "sgd":
                out[name] = _sgd_update(value, g, group, state, step_lr)
            else:
                out[name] = _adam_update(value, g, group, state, step_lr, decoupled=kind == "adamw")
        return out

    return update


def _math_attention():
    """Force the plain-math attention kernel: fused SDPA kernels have no double backward."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3: the default kernels are used
        return contextlib.nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


@dataclass
class MetaGradient:
    """Result of :func:`meta_gradient`.

    Args:
        grads: name → ∂L_outer/∂(parameter of the weight net) (zeros for unused parameters).
        inner_loss: L_DawGen(Q; W) before the virtual step (detached).
        outer_loss: L_disc(Q'(W)) after it (detached).
    """

    grads: dict[str, Tensor]
    inner_loss: Tensor
    outer_loss: Tensor


def meta_gradient(
    module_Q: nn.Module,
    weight_net: nn.Module,
    inner_loss_fn: Callable[[CallQ, nn.Module], Tensor],
    outer_loss_fn: Callable[[CallQ], Tensor],
    inner_lr: float | VirtualUpdate,
    write_grad: bool = False,
) -> MetaGradient:
    """∂ L_outer(Q'(W)) / ∂W through one virtual update of the prompt parameters.

    Only the trainable parameters of ``module_Q`` are stepped; frozen parameters and buffers (the
    LM) are used as they are. Neither module's parameters are modified, and no ``.grad`` is
    written unless ``write_grad`` (then the weight net's ``.grad`` is overwritten with the result).

    Args:
        module_Q: the prompt module (unwrapped from DDP), e.g. soft prompts over a frozen LM.
        weight_net: Φ_W, the token weighting network.
        inner_loss_fn: ``(call_q, weight_net) -> L_DawGen``; ``call_q(*args, **kwargs)`` runs module_Q
            with the current parameters.
        outer_loss_fn: ``(call_q) -> L_disc``; here ``call_q`` runs module_Q with the virtual parameters Q'.
        inner_lr: the virtual update: a step size α of plain SGD, or an update U (e.g. from
            :func:`optimizer_update`, the generator optimizer's own step).
        write_grad: also store the meta-gradient in the weight net's ``.grad``.
    """
    params = {name: p for name, p in module_Q.named_parameters() if p.requires_grad}
    if not params:
        raise SynthtuneError("meta_gradient: module_Q has no trainable parameters; unfreeze the soft prompt")
    w_params = {name: p for name, p in weight_net.named_parameters() if p.requires_grad}
    if not w_params:
        raise SynthtuneError("meta_gradient: the weight net has no trainable parameters; use mode='learned'")

    def caller(values: dict[str, Tensor]) -> CallQ:
        return lambda *args, **kwargs: functional_call(module_Q, values, args, kwargs)

    with _math_attention():
        inner = inner_loss_fn(caller(params), weight_net)
        if inner.numel() != 1:
            raise SynthtuneError(
                f"inner_loss_fn must return a scalar, got shape {tuple(inner.shape)}; reduce it with .mean()"
            )
        # Local autograd.grad with create_graph: ∇_Q L_DawGen stays a function of W.
        q_grads = torch.autograd.grad(inner, list(params.values()), create_graph=True, allow_unused=True)
        grads_by_name = dict(zip(params, q_grads))
        virtual = (inner_lr(params, grads_by_name) if callable(inner_lr)
                   else virtual_step(params, grads_by_name, inner_lr))
        outer = outer_loss_fn(caller(virtual))
        if outer.numel() != 1:
            raise SynthtuneError(
                f"outer_loss_fn must return a scalar, got shape {tuple(outer.shape)}; reduce it with .mean()"
            )
        # DawGen meta-gradient: ∂ L_disc(Q'(W)) / ∂W
        w_grads = torch.autograd.grad(outer, list(w_params.values()), allow_unused=True)

    grads = {
        name: torch.zeros_like(p) if g is None else g.detach()
        for (name, p), g in zip(w_params.items(), w_grads)
    }
    if write_grad:
        for name, p in w_params.items():
            p.grad = grads[name].clone()
    return MetaGradient(grads=grads, inner_loss=inner.detach(), outer_loss=outer.detach())


def all_reduce_grads(params: Iterable[Tensor]) -> None:
    """Average ``.grad`` of ``params`` across ranks when torch.distributed is initialised; no-op otherwise.

    A parameter without ``.grad`` takes part as zeros (and gets the averaged gradient), so every rank
    issues the same collective. All gradients travel in one flat buffer.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n
