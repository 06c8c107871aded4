"""Task-conditioned Mixture-of-Experts in selected transformer blocks or CNN stages.

The MLP of a chosen block (``layer.mlp`` of transformers' DINOv2 and DINOv3
layers, whatever its class: plain, SwiGLU or gated; for a convolutional backbone the
pointwise MLP of a residual block after the stage, see
:class:`~medfleet.models.conv_backbones.StageMLP`) is replaced by
:class:`MoEMLP`: ``E`` experts and a router whose logits are

``logits = W_task · e_task  (+ W_token · x)``

where ``e_task`` is a learned embedding of the current task (shared by all
MoE blocks) and ``x`` the token. Each token goes to its ``top_k`` experts;
their outputs are summed with the renormalised router probabilities.

Experts start from the dense MLP: with ``expert_hidden_ratio = r`` each
expert keeps a cyclic slice of ``r`` of the MLP's hidden units, its output
projection scaled by ``1/r`` (``r = 1`` copies the MLP: sparse upcycling).
With the default ``r = 1/top_k`` the compute per token equals the dense MLP.

Load balancing (Switch Transformer): ``E * sum_e f_e * P_e`` with ``f_e``
the fraction of routing slots taken by expert ``e`` and ``P_e`` its mean
router probability; it is 1 for a uniform router.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from medfleet.errors import MedfleetError
from medfleet.models.config import MoEConfig


class RoutingState:
    """The current task's embedding, shared by the MoE blocks of one model."""

    def __init__(self) -> None:
        self.task_vector: torch.Tensor | None = None
        self.task_name: str | None = None


def _linear_children(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in module.named_children() if isinstance(m, nn.Linear)]


def slice_mlp(dense: nn.Module, ratio: float, index: int, count: int) -> nn.Module:
    """An expert made of a cyclic slice of the dense MLP's hidden units.

    Input projections (``hidden -> intermediate``) keep the selected rows,
    the output projection (``intermediate -> hidden``) the selected columns,
    scaled by ``1/ratio``. The module's own ``forward`` is reused.

    Example:
        >>> mlp = nn.Sequential()
        >>> mlp.fc1, mlp.act, mlp.fc2 = nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4)
        >>> slice_mlp(mlp, 0.5, 1, 4).fc1.out_features
        4
    """
    expert = copy.deepcopy(dense)
    linears = _linear_children(dense)
    if ratio >= 1.0:
        return expert
    if len(linears) < 2:
        raise MedfleetError(
            f"cannot split {type(dense).__name__} into experts: it has no input/output linears"
        )
    hidden = linears[-1][1].out_features
    intermediate = linears[-1][1].in_features
    width = max(1, round(intermediate * ratio))
    start = (index * intermediate) // count
    keep = (torch.arange(width) + start) % intermediate
    for name, lin in linears:
        if lin.in_features == hidden and lin.out_features == intermediate:
            new = nn.Linear(hidden, width, bias=lin.bias is not None)
            with torch.no_grad():
                new.weight.copy_(lin.weight[keep])
                if lin.bias is not None:
                    new.bias.copy_(lin.bias[keep])
        elif lin.in_features == intermediate and lin.out_features == hidden:
            new = nn.Linear(width, hidden, bias=lin.bias is not None)
            with torch.no_grad():
                new.weight.copy_(lin.weight[:, keep] * (intermediate / width))
                if lin.bias is not None:
                    new.bias.copy_(lin.bias)
        else:
            raise MedfleetError(
                f"cannot split {type(dense).__name__}.{name} ({lin.in_features}->"
                f"{lin.out_features}) into experts (fix: set moe.expert_hidden_ratio: 1.0)"
            )
        new = new.to(device=lin.weight.device, dtype=lin.weight.dtype)
        setattr(expert, name, new)
    return expert


class MoEMLP(nn.Module):
    """Drop-in replacement of a transformer block's MLP by routed experts.

    Args:
        dense: The block's MLP (experts are initialised from it).
        hidden_size: Token width.
        config: MoE settings.
        state: Shared routing state (the current task's embedding).

    Example:
        >>> mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        >>> state = RoutingState(); state.task_vector = torch.zeros(4)
        >>> moe = MoEMLP(mlp, 8, MoEConfig(num_experts=4, top_k=2, task_embed_dim=4), state)
        >>> tuple(moe(torch.randn(2, 5, 8)).shape), moe.last_counts.sum().item()
        ((2, 5, 8), 20.0)
    """

    def __init__(
        self, dense: nn.Module, hidden_size: int, config: MoEConfig, state: RoutingState
    ) -> None:
        super().__init__()
        self.num_experts = config.num_experts
        self.top_k = config.top_k
        self.token_routing = config.token_routing
        self.task_conditioned = config.task_conditioned
        ratio = config.hidden_ratio
        self.experts = nn.ModuleList(
            slice_mlp(dense, ratio, e, config.num_experts) for e in range(config.num_experts)
        )
        self.router_task = (
            nn.Linear(config.task_embed_dim, config.num_experts) if self.task_conditioned else None
        )
        self.router_token = (
            nn.Linear(hidden_size, config.num_experts, bias=not self.task_conditioned)
            if self.token_routing
            else None
        )
        if self.router_token is not None:
            nn.init.normal_(self.router_token.weight, std=0.02)
        self._state = state
        self.last_aux: torch.Tensor | None = None
        self.last_counts: torch.Tensor | None = None

    def _router_logits(self, flat: torch.Tensor) -> torch.Tensor:
        logits = None
        if self.router_token is not None:
            logits = self.router_token(flat)
        if self.router_task is not None:
            vec = self._state.task_vector
            if vec is None:
                raise MedfleetError(
                    "MoE block called without a task (fix: call the model as model(images, task))"
                )
            task_logits = self.router_task(vec.to(flat.dtype))
            logits = (
                task_logits.expand(flat.shape[0], -1) if logits is None else logits + task_logits
            )
        assert logits is not None
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Route the tokens ``(..., D)`` to their experts."""
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        tokens = flat.shape[0]
        if self.router_token is None:
            return self._forward_task_only(flat, tokens).reshape(shape)
        probs = self._router_logits(flat).float().softmax(dim=-1)
        top_p, top_i = probs.topk(self.top_k, dim=-1)
        gates = (top_p / top_p.sum(dim=-1, keepdim=True)).to(flat.dtype)
        # sort the (token, slot) pairs by expert: one gather, one matmul pair per expert
        # on a contiguous chunk, one scatter back
        choice = top_i.reshape(-1)
        order = choice.argsort(stable=True)
        token_of = order // self.top_k
        counts = torch.bincount(choice, minlength=self.num_experts)
        chunks = flat.index_select(0, token_of).split(counts.tolist())
        y = torch.cat(
            [
                expert(chunk)
                for expert, chunk in zip(self.experts, chunks, strict=True)
                if chunk.numel()
            ]
        )
        y = y.to(flat.dtype) * gates.reshape(-1)[order, None]
        out = torch.zeros_like(flat).index_add_(0, token_of, y)
        counts = counts.to(probs.dtype)
        fraction = counts / (tokens * self.top_k)
        self.last_aux = self.num_experts * (fraction * probs.mean(dim=0)).sum()
        self.last_counts = counts.detach()
        return out.reshape(shape)

    def _forward_task_only(self, flat: torch.Tensor, tokens: int) -> torch.Tensor:
        """All tokens share the task's routing: run only its ``top_k`` experts."""
        probs = self._router_logits(flat[:1]).float().softmax(dim=-1)[0]
        top_p, top_i = probs.topk(self.top_k)
        gates = (top_p / top_p.sum()).to(flat.dtype)
        out = None
        for gate, e in zip(gates, top_i.tolist(), strict=True):
            y = self.experts[e](flat) * gate
            out = y if out is None else out + y
        counts = torch.zeros(self.num_experts, dtype=probs.dtype, device=probs.device)
        counts[top_i] = float(tokens)
        fraction = counts / (tokens * self.top_k)
        self.last_aux = self.num_experts * (fraction * probs).sum()
        self.last_counts = counts.detach()
        assert out is not None
        return out


class TaskRouter(nn.Module):
    """The learned task embeddings and the MoE blocks they condition.

    Args:
        tasks: Task names (the embedding row of a task is its index).
        config: MoE settings.
    """

    def __init__(self, tasks: list[str], config: MoEConfig) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.config = config
        self.embedding = nn.Embedding(len(tasks), config.task_embed_dim)
        nn.init.normal_(self.embedding.weight, std=1.0)
        self.state = RoutingState()
        self.block_indices: list[int] = []
        self._blocks: list[MoEMLP] = []

    def attach(self, layers: nn.ModuleList, blocks: list[int], hidden_size: int) -> None:
        """Replace ``layers[i].mlp`` by :class:`MoEMLP` for each block index ``i``."""
        for i in blocks:
            self.attach_one(i, layers[i], hidden_size)

    def attach_one(self, index: int, layer: nn.Module, hidden_size: int) -> None:
        """Replace ``layer.mlp`` by :class:`MoEMLP`, recorded as block ``index``."""
        if not hasattr(layer, "mlp"):
            raise MedfleetError(
                f"block {index} ({type(layer).__name__}) has no 'mlp' module to turn into experts"
            )
        moe = MoEMLP(layer.mlp, hidden_size, self.config, self.state)
        layer.mlp = moe
        self.block_indices.append(index)
        self._blocks.append(moe)

    @property
    def blocks(self) -> list[MoEMLP]:
        """The MoE blocks, in block order."""
        return list(self._blocks)

    def set_task(self, task: str) -> None:
        """Make ``task`` the current task (called before each backbone forward)."""
        index = self.tasks.index(task)
        self.state.task_vector = self.embedding.weight[index]
        self.state.task_name = task
        for block in self._blocks:
            block.last_aux = None
            block.last_counts = None

    def aux_loss(self) -> torch.Tensor:
        """Mean load-balancing loss of the MoE blocks in the last forward (unweighted)."""
        values = [b.last_aux for b in self._blocks if b.last_aux is not None]
        if not values:
            return self.embedding.weight.new_zeros(())
        return torch.stack(values).mean()

    def last_counts(self) -> torch.Tensor | None:
        """Routing slots per expert ``(n_blocks, E)`` of the last forward."""
        counts = [b.last_counts for b in self._blocks]
        if any(c is None for c in counts):
            return None
        return torch.stack(counts)  # type: ignore[arg-type]
