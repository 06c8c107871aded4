"""Task-conditioned Mixture-of-Experts: routing, usage statistics, balance loss."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medfleet.models import ModelConfig, MoEConfig, build_model
from medfleet.models.moe import MoEMLP, RoutingState, slice_mlp


class MLP(nn.Module):
    def __init__(self, d: int = 8, hidden: int = 16) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, hidden), nn.Linear(hidden, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.nn.functional.gelu(self.fc1(x)))


def make_moe(config: MoEConfig, d: int = 8) -> tuple[MoEMLP, RoutingState, MLP]:
    torch.manual_seed(0)
    dense = MLP(d)
    state = RoutingState()
    state.task_vector = torch.randn(config.task_embed_dim)
    return MoEMLP(dense, d, config, state), state, dense


def test_sliced_experts_with_uniform_router_equal_the_dense_mlp() -> None:
    # E experts each holding 1/E of the hidden units, all selected with equal gates:
    # sum_e (1/E) * E * partial_e = dense output
    config = MoEConfig(num_experts=4, top_k=4, expert_hidden_ratio=0.25, task_embed_dim=4)
    moe, _, dense = make_moe(config)
    for lin in (moe.router_task, moe.router_token):
        nn.init.zeros_(lin.weight)
        if lin.bias is not None:
            nn.init.zeros_(lin.bias)
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(moe(x), dense(x), rtol=1e-5, atol=1e-5)
    assert moe.last_aux.item() == pytest.approx(1.0)  # uniform router: E * sum(1/E * 1/E)


def test_topk_routing_matches_per_token_oracle() -> None:
    config = MoEConfig(num_experts=4, top_k=2, task_embed_dim=4)
    moe, state, _ = make_moe(config)
    x = torch.randn(2, 6, 8)
    out = moe(x).reshape(-1, 8)
    flat = x.reshape(-1, 8)
    logits = moe.router_token(flat) + moe.router_task(state.task_vector)
    probs = logits.softmax(-1)
    expected = []
    for t in range(flat.shape[0]):
        p, idx = probs[t].topk(2)
        g = p / p.sum()
        expected.append(sum(g[j] * moe.experts[int(idx[j])](flat[t : t + 1])[0] for j in range(2)))
    torch.testing.assert_close(out, torch.stack(expected), rtol=1e-5, atol=1e-5)
    counts = torch.zeros(4)
    for t in range(flat.shape[0]):
        counts[probs[t].topk(2).indices] += 1
    torch.testing.assert_close(moe.last_counts, counts)
    f = counts / (12 * 2)
    assert moe.last_aux.item() == pytest.approx(
        4 * float((f * probs.mean(0)).sum().detach()), rel=1e-5
    )


def test_task_only_routing_sends_all_tokens_to_the_same_experts() -> None:
    config = MoEConfig(num_experts=4, top_k=2, token_routing=False, task_embed_dim=4)
    moe, state, _ = make_moe(config)
    x = torch.randn(2, 5, 8)
    out = moe(x)
    probs = moe.router_task(state.task_vector).softmax(-1)
    p, idx = probs.topk(2)
    g = p / p.sum()
    expected = g[0] * moe.experts[int(idx[0])](x) + g[1] * moe.experts[int(idx[1])](x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert sorted(torch.nonzero(moe.last_counts).flatten().tolist()) == sorted(idx.tolist())
    assert moe.last_counts.sum().item() == 2 * 10


def test_upcycled_experts_copy_the_dense_mlp() -> None:
    dense = MLP()
    expert = slice_mlp(dense, 1.0, 2, 4)
    x = torch.randn(4, 8)
    torch.testing.assert_close(expert(x), dense(x))
    assert expert.fc1 is not dense.fc1


def test_model_usage_statistics_per_task_and_aux_loss(manifest) -> None:
    config = ModelConfig(
        backbone="vit-tiny", image_size=32, moe=MoEConfig(blocks=[1, -1], num_experts=3, top_k=2)
    )
    model = build_model(manifest, config, tasks=["cls", "seg"])
    assert model.moe_blocks == [1, 3]
    x = torch.randn(2, 1, 32, 32)
    model(x, "cls")
    aux = model.aux_loss()
    assert aux.requires_grad and 0.0 < aux.item() <= 0.01 * 3  # weight * E * sum(f P) <= weight*E
    model(x, "cls")
    model(x, "seg")
    usage = model.expert_usage()
    tokens = 2 * (1 + 16)  # batch * (class token + 4x4 patches)
    assert usage["cls"].shape == (2, 3)
    assert usage["cls"].sum(axis=1).tolist() == [2 * tokens * 2] * 2  # two forwards, top-2
    assert usage["seg"].sum(axis=1).tolist() == [tokens * 2] * 2
    model.reset_expert_usage()
    assert model.expert_usage()["cls"].sum() == 0


def test_task_embedding_changes_routing_between_tasks(manifest) -> None:
    torch.manual_seed(3)
    config = ModelConfig(
        image_size=32, moe=MoEConfig(blocks=[-1], num_experts=8, top_k=1, token_routing=False)
    )
    model = build_model(manifest, config)
    x = torch.randn(1, 1, 32, 32)
    chosen = set()
    for task in model.tasks:
        model(x, task)
        chosen.add(int(model.expert_usage()[task][0].argmax()))
    assert len(chosen) > 1  # random task embeddings pick different experts


def test_dense_model_has_zero_aux_loss_and_no_usage(manifest) -> None:
    model = build_model(manifest, ModelConfig(image_size=32), tasks=["reg"])
    model(torch.randn(1, 1, 32, 32), "reg")
    assert model.aux_loss().item() == 0.0
    assert model.expert_usage()["reg"].shape == (0, 0)
    assert model.count_parameters()["moe"] == 0


def test_moe_on_dinov3_style_blocks(manifest) -> None:
    config = ModelConfig(backbone="vit-tiny-v3", image_size=32, moe=MoEConfig(blocks=[0, 2]))
    model = build_model(manifest, config, tasks=["seg", "lm"])
    out = model(torch.randn(2, 1, 32, 32), "lm")
    assert tuple(out["heatmaps"].shape) == (2, 3, 8, 8)
    tokens = 2 * (1 + 2 + 16)  # class token, 2 registers, 16 patches
    assert model.expert_usage()["lm"].sum(axis=1).tolist() == [tokens * 2] * 2


def test_moe_config_validation() -> None:
    with pytest.raises(ValueError, match="top_k"):
        MoEConfig(num_experts=2, top_k=3)
    with pytest.raises(ValueError, match="router needs an input"):
        MoEConfig(task_conditioned=False, token_routing=False)


def test_expert_usage_plot(tmp_path, manifest) -> None:
    from medfleet.errors import MedfleetError
    from medfleet.models import plot_expert_usage
    from medfleet.models.plots import usage_shares

    config = ModelConfig(image_size=32, moe=MoEConfig(blocks=[-1], num_experts=4))
    model = build_model(manifest, config, tasks=["cls", "reg"])
    model(torch.randn(1, 1, 32, 32), "cls")
    shares = usage_shares(model.expert_usage())
    assert shares["cls"].sum() == pytest.approx(1.0) and shares["reg"].sum() == 0.0
    out = plot_expert_usage(model.expert_usage(), tmp_path / "usage.png", model.moe_blocks)
    assert out.read_bytes()[:4] == b"\x89PNG"
    dense = build_model(manifest, ModelConfig(image_size=32), tasks=["cls"])
    with pytest.raises(MedfleetError, match="no MoE blocks"):
        plot_expert_usage(dense.expert_usage(), tmp_path / "x.png")
