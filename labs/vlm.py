"""Connecting a frozen vision encoder to a frozen language model: MLP projector vs Q-Former.

A vision-language model feeds an image to a language model as a few "visual tokens": vectors in
the LM's input-embedding space, placed before the text. This lab trains only the connector that
makes them, with the vision encoder and the LM both frozen, on one loss, the LM's cross-entropy
on the caption given the visual tokens,

    -sum_t log p_LM(caption_t | z_1..z_N, <sep>, caption_<t),

with gradients reaching only the connector, and compares two connectors:

    LLaVA-style MLP projector:  z_i = W2 gelu(W1 v_i)      for every patch feature v_i
                                (N patches -> N visual tokens)
    Q-Former-style connector:   Q (K learned queries) attend to the patches,
                                z = FFN(Q + softmax(Q_W (V W_k)^T / sqrt(d)) V W_v)   (K tokens)

How this relates to the published recipes:
- LLaVA, stage 1 (feature alignment): exactly this set-up. Encoder and LLM frozen, the
  projector trained on image-caption pairs with the LLM's loss. (LLaVA's stage 2, instruction
  tuning with the LLM unfrozen, is not done here.)
- BLIP-2 has two stages and the lab does only the second. Stage 1 involves no LM at all: the
  Q-Former (queries plus a BERT-style text transformer, initialised from BERT) is trained against
  the frozen image encoder with three losses, image-text contrastive (ITC), image-text matching
  (ITM) and image-grounded text generation (ITG). Stage 2 projects the Q-Former's output into the
  frozen LLM and trains with the LLM's language-modelling loss. The lab's Q-Former is smaller
  (one query block, no text branch), starts from random weights and skips stage 1, so its queries
  learn what to extract only through the frozen LM's loss, as in BLIP-2's stage 2.

The MLP keeps every patch (N tokens, each carrying one place of the image); the Q-Former
compresses the image into K << N tokens, so the LM's sequence, and its attention cost, is
shorter. The baseline in the same run is the untrained connector (the MLP projector at its
initialisation), which shows what the frozen LM makes of visual tokens that say nothing yet.

Everything here is made by the lab and small (images, captions and the text task: ``labs/_vlm_data.py``):
- images: 3 x 24 x 24 tensors, a 3 x 3 grid of cells, one coloured shape (4 colours x 4 shapes)
  in one cell (9 places), with random brightness and pixel noise. The caption is
  "<colour> <shape> <row> <column>" (e.g. "red disk top left"); 144 possible captions.
- the vision encoder: 6 x 6 patches (16 of them) -> linear patch embedding + learned positions
  -> 2 transformer layers. It is pretrained briefly on the lab's own images to predict the four
  attributes from its mean-pooled output (a stand-in for CLIP pretraining), then frozen.
- the LM: the tiny Llama of ``labs._tinylm`` (2 layers, hidden 64) over an 18-word vocabulary,
  pretrained on text only, then frozen. Its text task teaches it to read a context: the four
  caption words in random order, scattered among filler words (context length 4 to 16), then
  <sep>, then the caption in canonical order and <eos>. A connector succeeds when its visual
  tokens work as such a context.

Reported for each connector: exact-match and per-word accuracy of greedy captions on held-out
images (chance: 1/144 exact, 1/4, 1/4, 1/3, 1/3 per word), the number of visual tokens, the
connector's parameters and its training time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from labs._runtime import Emitter, LabFailure, Range
from labs._tinylm import build_model, count_parameters, cpu_threads, model_config
from labs._vlm_data import (  # noqa: F401  (the world's names, read through this module by its test)
    CELL, COLOURS, FIELDS, FILL, MASKS, N_PATCHES, PATCH, SEP, SHAPES, SIZE, VOCAB, caption_ids, make_images,
    text_contexts)
from labs.protocol import Chart


@dataclass
class Config:
    seed: int = 0
    device: str = "cpu"
    # data
    n_train: int = 4000
    n_eval: int = 500
    noise: float = 0.08
    # vision encoder
    vit_dim: int = 64
    vit_layers: int = 2
    vit_steps: int = 400
    # language model
    lm_dim: int = 64
    lm_layers: int = 2
    lm_ff: int = 128
    lm_steps: int = 800
    # connectors
    queries: int = 4  # Q-Former's learned queries = its visual tokens
    connector_steps: int = 600
    batch: int = 32
    lr: float = 3e-3
    log_every: int = 50

    def validate(self) -> None:
        if self.queries < 1 or self.queries >= N_PATCHES:
            raise ValueError(f"queries must be between 1 and {N_PATCHES - 1} (fewer than the patches)")
        if min(self.n_train, self.n_eval, self.batch) < 1:
            raise ValueError("n_train, n_eval and batch must be positive")
        if self.vit_dim % 4 or self.lm_dim % 4:
            raise ValueError("vit_dim and lm_dim must divide by 4 (attention heads)")


LIMITS = {"n_train": Range(1), "n_eval": Range(1), "noise": Range(0), "vit_dim": Range(4), "vit_layers": Range(1),
          "vit_steps": Range(1), "lm_dim": Range(4), "lm_layers": Range(1), "lm_ff": Range(1), "lm_steps": Range(1),
          "queries": Range(1, N_PATCHES - 1), "connector_steps": Range(1), "batch": Range(1),
          "lr": Range(0, low_open=True), "log_every": Range(1)}

TOY = {"n_train": 2000, "n_eval": 300, "vit_steps": 150, "lm_steps": 250, "connector_steps": 200}

CHARTS = [
    Chart("Connector training, frozen encoder and LM", y=("losses/mlp_projector", "losses/qformer"),
          x_label="step (MLP projector, then Q-Former)", y_label="caption loss",
          look_for="Only the connector learns, yet the caption loss falls: it maps image features into the LM's space."),
    Chart("Exact captions by connector", table="connectors", y=("exact_match",),
          x_label="untrained, MLP projector, Q-Former, chance", y_label="exact-match fraction",
          look_for="Both trained connectors beat the untrained one and chance by far."),
]


# -- models --------------------------------------------------------------------------------

class VisionEncoder(torch.nn.Module):
    """Patch embedding + learned positions + a small transformer; returns patch features."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.embed = torch.nn.Linear(3 * PATCH * PATCH, dim)
        self.pos = torch.nn.Parameter(torch.randn(N_PATCHES, dim) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = torch.nn.LayerNorm(dim)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(dim, len(f)) for f in FIELDS)  # pretraining only

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        patches = images.unfold(2, PATCH, PATCH).unfold(3, PATCH, PATCH)  # b, 3, 4, 4, 6, 6
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(b, N_PATCHES, -1)
        return self.norm(self.blocks(self.embed(patches) + self.pos))

    def classify(self, images: torch.Tensor) -> list[torch.Tensor]:
        pooled = self.forward(images).mean(dim=1)
        return [head(pooled) for head in self.heads]


class MLPProjector(torch.nn.Module):
    """LLaVA-1.5: a two-layer MLP applied to every patch feature (N patches -> N tokens)."""

    def __init__(self, vit_dim: int, lm_dim: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(vit_dim, lm_dim), torch.nn.GELU(), torch.nn.Linear(lm_dim, lm_dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.net(feats)


class QFormer(torch.nn.Module):
    """BLIP-2 style, reduced to its core: K learned queries, self-attention among them,
    cross-attention to the patch features, an MLP, then a projection to the LM (K tokens)."""

    def __init__(self, vit_dim: int, lm_dim: int, queries: int, heads: int = 4):
        super().__init__()
        self.queries = torch.nn.Parameter(torch.randn(queries, vit_dim) * 0.02)
        self.norm_q, self.norm_kv, self.norm_s, self.norm_m = (torch.nn.LayerNorm(vit_dim) for _ in range(4))
        self.self_attn = torch.nn.MultiheadAttention(vit_dim, heads, batch_first=True)
        self.cross = torch.nn.MultiheadAttention(vit_dim, heads, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(vit_dim, 2 * vit_dim), torch.nn.GELU(), torch.nn.Linear(2 * vit_dim, vit_dim))
        self.out = torch.nn.Linear(vit_dim, lm_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        q = self.queries.expand(feats.shape[0], -1, -1)
        h = self.norm_s(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        kv = self.norm_kv(feats)
        q = q + self.cross(self.norm_q(q), kv, kv, need_weights=False)[0]
        q = q + self.mlp(self.norm_m(q))
        return self.out(q)


def lm_inputs(lm: torch.nn.Module, visual: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
    """[visual tokens, <sep>, caption] as input embeddings."""
    emb = lm.get_input_embeddings()
    sep = emb(torch.full((visual.shape[0], 1), SEP, device=visual.device))
    return torch.cat([visual, sep, emb(caption)], dim=1)


def caption_loss(lm: torch.nn.Module, prefix_len: int, inputs: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the caption tokens only; position prefix_len + t predicts caption t."""
    logits = lm(inputs_embeds=inputs).logits[:, prefix_len:prefix_len + caption.shape[1]]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), caption.reshape(-1))


@torch.no_grad()
def greedy_captions(lm: torch.nn.Module, visual: torch.Tensor, n_words: int = 4) -> torch.Tensor:
    """Generate n_words tokens after [visual tokens, <sep>]; returns (n, n_words) ids."""
    emb = lm.get_input_embeddings()
    inputs = torch.cat([visual, emb(torch.full((visual.shape[0], 1), SEP, device=visual.device))], dim=1)
    out = []
    for _ in range(n_words):
        nxt = lm(inputs_embeds=inputs).logits[:, -1].argmax(-1)
        out.append(nxt)
        inputs = torch.cat([inputs, emb(nxt)[:, None]], dim=1)
    return torch.stack(out, dim=1)


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    gold = caption_ids(labels)[:, :4]
    right = pred == gold
    return {"exact": right.all(dim=1).float().mean().item(),
            **{name: right[:, i].float().mean().item() for i, name in enumerate(("colour", "shape", "row", "column"))}}


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
        p.grad = None
    return module.eval()


# -- the lab -------------------------------------------------------------------------------

def run(cfg: Config, emit: Emitter, out_dir: Path) -> None:
    total = cfg.vit_steps + cfg.lm_steps + 2 * cfg.connector_steps
    emit.start(cfg, total_steps=total)
    with cpu_threads(1):
        _run(cfg, emit, out_dir, total)


def _run(cfg: Config, emit: Emitter, out_dir: Path, total: int) -> None:
    device = cfg.device
    gen = torch.Generator().manual_seed(cfg.seed)
    train_x, train_y = make_images(cfg.n_train, cfg.noise, gen)
    eval_x, eval_y = make_images(cfg.n_eval, cfg.noise, gen)
    train_x, train_y, eval_x, eval_y = (t.to(device) for t in (train_x, train_y, eval_x, eval_y))
    done = 0

    def fit(params, steps: int, seed: int, loss_of, name: str) -> float:
        """AdamW on ``params`` for ``steps`` minibatches of training indices; returns seconds."""
        nonlocal done
        opt = torch.optim.AdamW(params, lr=cfg.lr)
        g = torch.Generator().manual_seed(seed)
        t0 = time.perf_counter()
        for step in range(1, steps + 1):
            loss = loss_of(torch.randint(cfg.n_train, (cfg.batch,), generator=g))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % cfg.log_every == 0:
                emit.metric(done + step, **{f"losses/{name}": loss.item()})
                emit.progress(done + step)
        done += steps
        return time.perf_counter() - t0

    # 1. pretrain the vision encoder on the attributes, then freeze it
    torch.manual_seed(cfg.seed)
    vit = VisionEncoder(cfg.vit_dim, cfg.vit_layers).to(device)
    fit(vit.parameters(), cfg.vit_steps, cfg.seed + 1, lambda idx: sum(
        F.cross_entropy(lg, train_y[idx, f]) for f, lg in enumerate(vit.classify(train_x[idx]))), "vision_pretrain")
    freeze(vit)
    with torch.no_grad():
        vit_acc = min((lg.argmax(-1) == eval_y[:, f]).float().mean().item() for f, lg in enumerate(vit.classify(eval_x)))
        train_feats, eval_feats = vit(train_x), vit(eval_x)  # frozen: compute once
    emit.log(f"vision encoder pretrained: worst attribute accuracy {vit_acc:.3f} on held-out images; frozen")

    # 2. pretrain the LM on text only, then freeze it
    torch.manual_seed(cfg.seed + 2)
    lm = build_model(model_config(cfg.lm_dim, cfg.lm_layers, 4, cfg.lm_ff, max_len=N_PATCHES + 8,
                                  vocab_size=len(VOCAB))).to(device)
    text_gen = torch.Generator().manual_seed(cfg.seed + 3)

    def text_loss(idx: torch.Tensor) -> torch.Tensor:
        ids = text_contexts(train_y[idx].cpu(), text_gen).to(device)
        start = ids.shape[1] - 5  # the caption (4 words + <eos>) follows <sep>
        logits = lm(input_ids=ids).logits[:, start - 1:-1]
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, start:].reshape(-1))

    fit(lm.parameters(), cfg.lm_steps, cfg.seed + 4, text_loss, "lm_text_pretrain")
    freeze(lm)
    with torch.no_grad():
        ids = text_contexts(eval_y.cpu(), torch.Generator().manual_seed(cfg.seed + 5)).to(device)
        text_acc = greedy_text_accuracy(lm, ids, eval_y)
    emit.log(f"LM pretrained on text only: exact caption from a shuffled text context {text_acc:.3f}; frozen")
    if text_acc < 0.5:
        raise LabFailure(f"the text-only LM did not learn its task (exact match {text_acc:.3f})")

    # 3. train only the connector (LLaVA's stage 1; BLIP-2's stage 2), after the untrained baseline
    results = {}
    captions = caption_ids(train_y.cpu()).to(device)
    torch.manual_seed(cfg.seed + 6)
    untrained = MLPProjector(cfg.vit_dim, cfg.lm_dim).to(device)
    with torch.no_grad():
        visual = untrained(eval_feats)
        results["untrained_projector"] = {"tokens": visual.shape[1], "params": count_parameters(untrained),
                                          "seconds": 0.0, **accuracy(greedy_captions(lm, visual), eval_y)}
    for name, make in (("mlp_projector", lambda: MLPProjector(cfg.vit_dim, cfg.lm_dim)),
                       ("qformer", lambda: QFormer(cfg.vit_dim, cfg.lm_dim, cfg.queries))):
        torch.manual_seed(cfg.seed + 6)
        connector = make().to(device)

        def connector_loss(idx: torch.Tensor) -> torch.Tensor:
            visual = connector(train_feats[idx])
            return caption_loss(lm, visual.shape[1], lm_inputs(lm, visual, captions[idx]), captions[idx])

        seconds = fit(connector.parameters(), cfg.connector_steps, cfg.seed + 7, connector_loss, name)
        if any(p.grad is not None for p in list(lm.parameters()) + list(vit.parameters())):
            raise LabFailure("a frozen model received gradients")
        with torch.no_grad():
            visual = connector(eval_feats)
            acc = accuracy(greedy_captions(lm, visual), eval_y)
        results[name] = {"tokens": visual.shape[1], "params": count_parameters(connector), "seconds": seconds, **acc}
        emit.metric(done, **{f"eval/{name}_exact": acc["exact"]})

    chance = {"exact": 1 / 144, "colour": 1 / 4, "shape": 1 / 4, "row": 1 / 3, "column": 1 / 3}
    cols = ["connector", "visual_tokens", "lm_tokens_per_example", "params", "train_seconds", "exact_match",
            "colour", "shape", "row", "column"]
    rows = [[n, r["tokens"], r["tokens"] + 6, r["params"], r["seconds"], r["exact"], r["colour"], r["shape"], r["row"],
             r["column"]] for n, r in results.items()]
    rows.append(["chance", None, None, None, None, chance["exact"], chance["colour"], chance["shape"], chance["row"],
                 chance["column"]])
    emit.table("connectors", cols, rows)
    mlp, qf, base = results["mlp_projector"], results["qformer"], results["untrained_projector"]
    words = ("colour", "shape", "row", "column")
    emit.summary({
        "vision_encoder_attribute_accuracy": vit_acc,
        "lm_text_only_exact_match": text_acc,
        "mlp_exact_match": mlp["exact"],
        "qformer_exact_match": qf["exact"],
        "untrained_exact_match": base["exact"],
        "mlp_mean_word_accuracy": sum(mlp[k] for k in words) / 4,
        "qformer_mean_word_accuracy": sum(qf[k] for k in words) / 4,
        "untrained_mean_word_accuracy": sum(base[k] for k in words) / 4,
        "chance_exact_match": chance["exact"],
        "chance_mean_word_accuracy": (1 / 4 + 1 / 4 + 1 / 3 + 1 / 3) / 4,
        "mlp_visual_tokens": mlp["tokens"],
        "qformer_visual_tokens": qf["tokens"],
        "mlp_connector_params": mlp["params"],
        "qformer_connector_params": qf["params"],
        "mlp_train_seconds": mlp["seconds"],
        "qformer_train_seconds": qf["seconds"],
    })


@torch.no_grad()
def greedy_text_accuracy(lm: torch.nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> float:
    """Exact match of greedy captions after a text context (the LM's own pretraining task)."""
    prefix = ids[:, : ids.shape[1] - 5]
    pred = greedy_captions(lm, lm.get_input_embeddings()(prefix[:, :-1]))  # greedy_captions appends <sep>
    return accuracy(pred, labels)["exact"]
