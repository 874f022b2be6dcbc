"""The vlm lab: a frozen vision encoder and a frozen LM joined by an MLP projector or a Q-Former."""

from __future__ import annotations

import io

import pytest
import torch

from claims import Claim, LabResult, check_claims
from labs import vlm
from labs._runtime import EXIT_USAGE, main, run_in_process


CLAIMS = [
    Claim("frozen LM's exact caption from a shuffled text context", "lm_text_only_exact_match", ">", 0.7,
          null=1 / 144),
    Claim("MLP projector exact match - untrained projector's", lambda r: r.h["mlp_exact_match"]
          - r.h["untrained_exact_match"], ">", 0.3),
    Claim("Q-Former exact match - untrained projector's", lambda r: r.h["qformer_exact_match"]
          - r.h["untrained_exact_match"], ">", 0.3),
    Claim("MLP projector mean word accuracy - untrained projector's", lambda r: r.h["mlp_mean_word_accuracy"]
          - r.h["untrained_mean_word_accuracy"], ">", 0.3),
    Claim("Q-Former mean word accuracy - untrained projector's", lambda r: r.h["qformer_mean_word_accuracy"]
          - r.h["untrained_mean_word_accuracy"], ">", 0.3),
]


@pytest.mark.lab
def test_toy_run_both_connectors_beat_the_untrained_one(tmp_path):
    events = run_in_process("vlm", toy=True, out_dir=tmp_path)
    head = events[-1]["headline"]
    check_claims(CLAIMS, LabResult.of(events))
    assert head["qformer_visual_tokens"] == vlm.Config().queries < head["mlp_visual_tokens"] == vlm.N_PATCHES
    table = next(e for e in events if e["event"] == "table" and e["name"] == "connectors")
    assert [row[0] for row in table["rows"]] == ["untrained_projector", "mlp_projector", "qformer", "chance"]


@pytest.mark.parametrize("bad", ["queries=0", "queries=16", "n_eval=0", "lr=0", "batch=-1"])
def test_bad_settings_are_usage_errors(bad, tmp_path):
    assert main(["vlm", "--toy", "--set", bad, "--out", str(tmp_path)], io.StringIO()) == EXIT_USAGE


def test_images_show_their_labels():
    images, labels = vlm.make_images(20, 0.0, torch.Generator().manual_seed(0))
    assert images.shape == (20, 3, vlm.SIZE, vlm.SIZE)
    for img, (c, s, r, col) in zip(images, labels.tolist()):
        lit = img.abs().sum(0) > 0.1
        cell = lit[r * vlm.CELL:(r + 1) * vlm.CELL, col * vlm.CELL:(col + 1) * vlm.CELL]
        assert cell.sum() == lit.sum() > 0  # every lit pixel is in the labelled cell
        assert torch.equal(cell, vlm.MASKS[vlm.SHAPES[s]])
        rgb = img[:, lit].mean(1)
        assert rgb.argmax() == torch.tensor(vlm.COLOURS[vlm.FIELDS[0][c]]).argmax()


def test_captions_and_text_contexts():
    labels = torch.tensor([[0, 1, 2, 0], [3, 3, 0, 2]])
    caps = vlm.caption_ids(labels)
    words = [[vlm.VOCAB[i] for i in row] for row in caps.tolist()]
    assert words == [["red", "disk", "bottom", "left", "<eos>"], ["yellow", "cross", "top", "right", "<eos>"]]
    ids = vlm.text_contexts(labels, torch.Generator().manual_seed(1))
    ctx, rest = ids[:, :-6], ids[:, -6:]
    assert torch.equal(rest[:, 1:], caps) and (rest[:, 0] == vlm.SEP).all()
    for row, cap in zip(ctx, caps):
        assert sorted(row[row != vlm.FILL].tolist()) == sorted(cap[:4].tolist())


def test_connectors_output_shapes():
    feats = torch.randn(3, vlm.N_PATCHES, 32)
    assert vlm.MLPProjector(32, 48)(feats).shape == (3, vlm.N_PATCHES, 48)
    assert vlm.QFormer(32, 48, queries=4)(feats).shape == (3, 4, 48)
    assert vlm.VisionEncoder(32, 1)(torch.randn(2, 3, vlm.SIZE, vlm.SIZE)).shape == (2, vlm.N_PATCHES, 32)
