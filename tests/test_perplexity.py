"""`megadelta perplexity` on the reference backend against exp(mean NLL) by hand."""

import math
import re

import pytest
import torch

from megadelta.checkpoint import load_config, load_weights, make_random_checkpoint
from megadelta.cli import main
from megadelta.config import tiny_config
from megadelta.model import Qwen35Model
from megadelta.tokenizer import Tokenizer

TEXT = "The quick brown fox jumps over the lazy dog. " * 6


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    return make_random_checkpoint(tmp_path_factory.mktemp("ppl"), tiny_config(), seed=5, confident=True,
                                  dtype=torch.float32)


def perplexity_by_hand(model_dir) -> tuple[float, int]:
    config = load_config(model_dir)
    model = Qwen35Model(config, load_weights(model_dir, config, torch.float32))
    ids = Tokenizer.load(model_dir).encode(TEXT)
    logits = model.forward(ids, model.new_state(len(ids)), all_logits=True)
    log_probs = torch.log_softmax(logits[:-1].double(), dim=-1)
    nll = -log_probs.gather(1, torch.tensor(ids[1:])[:, None]).mean().item()
    return math.exp(nll), len(ids) - 1


@pytest.mark.parametrize("window", [7, 512])   # 7: many windows continuing one context
def test_perplexity_matches_hand_computation(checkpoint_dir, tmp_path, capsys, window):
    text_file = tmp_path / "text.txt"
    text_file.write_text(TEXT)
    main(["perplexity", str(text_file), "--model", str(checkpoint_dir), "--backend", "reference",
          "--device", "cpu", "--window", str(window)])
    out = capsys.readouterr().out
    match = re.search(r"perplexity ([\d.]+) over (\d+) tokens", out)
    assert match, out
    expected, n_scored = perplexity_by_hand(checkpoint_dir)
    assert int(match[2]) == n_scored
    assert float(match[1]) == pytest.approx(expected, rel=1e-4)


def test_too_short_text_is_an_error(checkpoint_dir, tmp_path, capsys):
    text_file = tmp_path / "short.txt"
    text_file.write_text("a")
    with pytest.raises(SystemExit) as e:
        main(["perplexity", str(text_file), "--model", str(checkpoint_dir), "--device", "cpu"])
    assert e.value.code == 1
    assert "at least 2 tokens" in capsys.readouterr().err
