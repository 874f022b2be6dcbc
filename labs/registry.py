"""Which labs exist, and where each sits in the 14-day roadmap.

Pure data, no heavy imports: the TUI process reads it to list labs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabInfo:
    name: str  # module name under labs/, and the CLI name
    day: int  # roadmap day the lab belongs to
    module: str  # roadmap module id (matches the cards' ``module``)
    title: str
    summary: str


LABS: tuple[LabInfo, ...] = (
    LabInfo("mdp", 1, "mdp", "Value and policy iteration",
            "Bellman backups on a slippery gridworld; how gamma sets the planning horizon."),
    LabInfo("td_learning", 2, "td_learning", "Q-learning vs SARSA, TD(0)",
            "Sutton & Barto's cliff walk, and TD(0) prediction on the random walk."),
    LabInfo("advantage", 3, "advantage", "Return estimators and gradient variance",
            "Policy gradient on CartPole with four return signals; variance of each."),
    LabInfo("gae", 4, "gae", "GAE(lambda) and PPO on CartPole",
            "Bias and variance of GAE against known true values; PPO solves CartPole."),
    LabInfo("sft", 5, "sft", "Supervised fine-tuning",
            "Completion-only cross-entropy on a tiny transformer; masked vs unmasked."),
    LabInfo("dpo", 6, "dpo", "Direct preference optimisation",
            "The implicit reward, preference accuracy and a beta sweep."),
    LabInfo("ppo", 7, "ppo", "PPO for language models",
            "Policy, reference, reward and value models; clipping vs no clipping."),
    LabInfo("grpo", 8, "grpo", "Group-relative policy optimisation",
            "Group-normalised advantages without a critic on a verifiable task."),
    LabInfo("kl_estimators", 8, "grpo", "KL estimators k1, k2, k3", "Bias, variance and the gradient each follows."),
    LabInfo("rlhf", 9, "rlhf", "The RLHF pipeline and reward hacking",
            "SFT, a Bradley-Terry reward model, then PPO with and without KL control."),
    LabInfo("cql", 10, "offline_rl", "Offline RL: DQN vs BC vs CQL",
            "Out-of-distribution overestimation and the conservative penalty."),
    LabInfo("vlm", 11, "vlm", "MLP projector vs Q-Former",
            "Aligning a tiny vision encoder to a tiny language model."),
    LabInfo("parallel", 12, "parallelism", "TP, PP, DP and ZeRO on torch.distributed",
            "Real processes on gloo: equal outputs, measured bytes, pipeline bubbles."),
    LabInfo("attention", 13, "reference", "MHA/MQA/GQA, KV cache, Flash-style tiling",
            "KV cache bytes, online-softmax attention, decoding with and without a cache."),
    LabInfo("lora", 13, "reference", "LoRA and training memory",
            "Trainable fraction by rank, merged weights, measured memory vs the calculator."),
    LabInfo("speculative", 13, "reference", "Speculative decoding",
            "A tiny draft proposes, the target verifies: exact outputs, acceptance rate, tokens per forward."),
)

BY_NAME: dict[str, LabInfo] = {lab.name: lab for lab in LABS}


def labs_for_day(day: int) -> list[LabInfo]:
    return [lab for lab in LABS if lab.day == day]
