"""Generation: greedy with the KV cache equals greedy without it (GPT-2-like, Llama-like, encoder-decoder), the
incremental logits equal the training forward's, sampling (seeded, nucleus), eos, prompts and the
`modalzoo generate` command with its one-line errors."""

from __future__ import annotations

import pytest
import torch

import modalzoo
from conftest import run_cli, tiny_overrides
from modalzoo.cli import main
from modalzoo.encoders.blocks import KVCache
from modalzoo.errors import ModalzooError
from modalzoo.modalities.text.generate import (
    _Decoder,
    causal_target,
    continuation_text,
    generate,
    generate_ids,
    sample_next,
)
from modalzoo.model import build_model
from modalzoo.registry import TOKENIZERS
from tiny_models import CORPUS, GPT_RECIPE, PAD, D, H, V, perturbed

ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def gpt2_like(vocab=V, max_positions=40):
    return {"streams": {"text": {
        "embedding": {"name": "token", "vocab_size": vocab, "dim": D, "max_positions": max_positions},
        "encoder": {"name": "transformer", "layers": 2, "dim": D, "heads": H, "ffn_dim": 64, "mask": "causal",
                    "activation": "gelu_tanh"}}},
        "targets": {"lm": {"name": "clm", "stream": "text"}}}


def llama_like():
    return {"streams": {"text": {
        "embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none"},
        "encoder": {"name": "transformer", "layers": 2, "dim": D, "heads": H, "kv_heads": 2, "mask": "causal",
                    "positions": "rope", "norm": "rmsnorm", "activation": "swiglu", "bias": False}}},
        "targets": {"lm": {"name": "clm", "stream": "text", "tie_weights": False}}}


def encoder_decoder():
    t5 = {"name": "transformer", "layers": 2, "dim": D, "heads": H, "ffn_dim": 64, "norm": "rmsnorm",
          "activation": "geglu", "bias": False, "attn_scale": 1.0, "positions": "t5_relative", "rel_buckets": 8,
          "rel_max_distance": 20}
    return {"streams": {"text": {
        "embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none"}, "encoder": t5,
        "target_embedding": {"name": "token", "vocab_size": V, "dim": D, "positions": "none"}, "decoder": t5}},
        "targets": {"seq2seq": {"name": "clm", "stream": "text", "source": "decoder"}}}


SHAPES = {"gpt2": gpt2_like, "llama": llama_like, "t5": encoder_decoder}


def model_of(shape: str, seed=0, **kw):
    torch.manual_seed(seed)
    return perturbed(build_model({"model": SHAPES[shape](**kw)}), std=0.3, seed=seed)


def prompt(B=2, L=6, seed=0):
    return torch.randint(5, V, (B, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES)
def test_greedy_with_the_cache_equals_greedy_without_it(shape):
    model = model_of(shape)
    ids = prompt()
    cached = generate_ids(model, ids, max_new_tokens=24, decoder_start_id=PAD)
    recomputed = generate_ids(model, ids, max_new_tokens=24, use_cache=False, decoder_start_id=PAD)
    assert cached.shape == (2, 24)
    assert torch.equal(cached, recomputed)
    assert len(set(cached.flatten().tolist())) > 3                   # a real sequence, not one repeated token


@pytest.mark.parametrize("shape", SHAPES)
def test_incremental_logits_equal_the_training_forward(shape):
    """Each step's logits from the cache equal the logits of the model's ordinary forward at that position."""
    model = model_of(shape)
    _, target = causal_target(model)
    ids = prompt()
    new = generate_ids(model, ids, max_new_tokens=10, decoder_start_id=PAD)
    dec = _Decoder(model, target, ids, 10, PAD)
    cache, steps = KVCache(), []
    feed, start = dec.first, 0
    with torch.no_grad():
        for i in range(10):
            steps.append(dec.logits(feed, start, cache))
            start, feed = start + feed.shape[1], new[:, i:i + 1]
        stream = model.streams["text"]
        if target.cfg.source == "encoder":
            out = stream({"input_ids": torch.cat([ids, new[:, :-1]], 1)})
            full = target.lm_logits(out.hidden.x, out)[:, ids.shape[1] - 1:]
        else:
            decoder_ids = torch.cat([torch.full((2, 1), PAD), new[:, :-1]], 1)
            out = stream({"input_ids": ids, "decoder_input_ids": decoder_ids})
            full = target.lm_logits(out.decoded.x, out)
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=ATOL, rtol=0)


def test_seeded_sampling_repeats_and_seeds_differ():
    model = model_of("llama")

    def sample(seed, **kw):
        return generate_ids(model, prompt(), 24, temperature=1.0, generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(sample(3), sample(3))
    assert torch.equal(sample(3), sample(3, use_cache=False))
    assert not torch.equal(sample(3), sample(4))
    greedy = generate_ids(model, prompt(), 24)
    assert not torch.equal(sample(3), greedy)
    assert torch.equal(sample(3, top_p=1e-6), greedy)                # a nucleus of one token is greedy


@pytest.mark.parametrize("top_p,allowed", [(0.5, {0}), (0.7, {0, 1}), (0.8, {0, 1}), (0.81, {0, 1, 2}),
                                           (1.0, {0, 1, 2, 3})])
def test_nucleus_keeps_the_smallest_set_that_reaches_top_p(top_p, allowed):
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(4000, 4)
    drawn = sample_next(logits, 1.0, top_p, torch.Generator().manual_seed(0))
    assert set(drawn.tolist()) == allowed
    kept = torch.tensor([0.5, 0.3, 0.15, 0.05])[sorted(allowed)]
    frequency = (drawn == 0).float().mean().item()
    assert abs(frequency - 0.5 / kept.sum().item()) < 0.03          # renormalised over the nucleus


def test_temperature_sharpens():
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(4000, 3)
    cold, hot = (sample_next(logits, t, 1.0, torch.Generator().manual_seed(0)) for t in (0.3, 3.0))
    assert (cold == 0).float().mean() > 0.9 > (hot == 0).float().mean()


def test_rows_stop_at_eos_and_generation_ends_when_all_have():
    model = model_of("gpt2")
    ids = prompt()
    greedy = generate_ids(model, ids, 24)
    eos = int(greedy[0, 3])
    out = generate_ids(model, ids, 24, eos_id=eos)
    for row, full in zip(out, greedy):
        hits = (full == eos).nonzero()
        stop = int(hits[0]) if len(hits) else len(full)
        assert torch.equal(row[:stop + 1], full[:stop + 1]) and (row[stop + 1:] == eos).all()
    stops = [int((g == eos).nonzero()[0]) + 1 if (g == eos).any() else 24 for g in greedy]
    assert out.shape[1] == max(stops)


def test_prefix_lm_stack_reads_the_prompt_both_ways():
    spec = llama_like()
    spec["streams"]["text"]["encoder"]["mask"] = "prefix"
    torch.manual_seed(0)
    model = perturbed(build_model({"model": spec}), std=0.3)
    ids = prompt()
    assert torch.equal(generate_ids(model, ids, 12), generate_ids(model, ids, 12, use_cache=False))
    causal = model_of("llama")
    causal.load_state_dict(model.state_dict())
    assert not torch.equal(generate_ids(model, ids, 12), generate_ids(causal, ids, 12))


@pytest.mark.parametrize("options,match", [({"max_new_tokens": 0}, "max_new_tokens must be positive"),
                                           ({"top_p": 0.0}, r"top_p must be in \(0, 1\]"),
                                           ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
                                           ({"temperature": -1.0}, "temperature must be >= 0"),
                                           ({"target": "lmm"}, "did you mean 'lm'")])
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(ModalzooError, match=match):
        generate_ids(model_of("gpt2"), prompt(), **options)


def test_prompt_and_new_tokens_must_fit_learned_positions():
    model = model_of("gpt2")                                         # max_positions 40
    with pytest.raises(ModalzooError, match="take 46 positions but the model has max_positions=40; "
                                            "at most 10 new tokens fit"):
        generate_ids(model, prompt(L=30), max_new_tokens=16)
    with pytest.raises(ModalzooError, match="shorten the prompt"):
        generate_ids(model, prompt(L=45), max_new_tokens=1)
    assert generate_ids(model, prompt(L=30), max_new_tokens=10).shape == (2, 10)
    assert generate_ids(model_of("llama"), prompt(L=30), max_new_tokens=16).shape == (2, 16)   # RoPE: no table


def test_a_model_without_a_causal_target_is_refused():
    spec = {"streams": gpt2_like()["streams"], "targets": {"mlm": {"name": "mlm", "stream": "text"}}}
    with pytest.raises(ModalzooError, match=r"no causal LM target .* its targets: mlm \(mlm\)"):
        generate_ids(build_model({"model": spec}), prompt())


@pytest.fixture(scope="module")
def tokenizer():
    return TOKENIZERS.build({"name": "wordpiece", "vocab_size": 200}).train(CORPUS)


def test_generate_frames_the_prompt_and_decodes_the_continuation(tokenizer):
    model = model_of("gpt2", vocab=tokenizer.vocab_size)
    result = generate(model, tokenizer, "The quick brown fox", max_new_tokens=8, eos_id=None)
    body = tokenizer.encode("The quick brown fox")[0]
    assert result.prompt_ids == [tokenizer.bos_id, *body]
    assert result.ids == generate_ids(model, torch.tensor([result.prompt_ids]), 8)[0].tolist()
    assert tokenizer.decode(body) + result.text == tokenizer.decode(body + result.ids)
    for bad in ("", "   "):
        with pytest.raises(ModalzooError, match="the prompt is empty"):
            generate(model, tokenizer, bad)


def test_continuation_text_joins_word_pieces(tokenizer):
    body, new = tokenizer.encode("the lazy")[0], tokenizer.encode("dog jumps")[0]
    assert continuation_text(tokenizer, body, new) == " dog jumps"
    pieces = tokenizer.encode("the digits")[0]                       # the, digit, ##s
    assert len(pieces) == 3
    assert continuation_text(tokenizer, pieces[:2], pieces[2:]) == "s"   # continues the word: no space
    assert tokenizer.decode(pieces[2:]) != "s"


def test_encoder_decoder_prompt_is_a_whole_document(tokenizer):
    spec = encoder_decoder()
    for part in ("embedding", "target_embedding"):
        spec["streams"]["text"][part]["vocab_size"] = tokenizer.vocab_size
    torch.manual_seed(0)
    model = perturbed(build_model({"model": spec}), std=0.3)
    result = generate(model, tokenizer, "a photo of a cat", max_new_tokens=6, eos_id=None)
    assert result.prompt_ids == [tokenizer.bos_id, *tokenizer.encode("a photo of a cat")[0], tokenizer.eos_id]
    start = torch.tensor([result.prompt_ids])
    assert result.ids == generate_ids(model, start, 6, decoder_start_id=tokenizer.pad_id)[0].tolist()


# ------------------------------------------------------------------------------------------ the command



@pytest.fixture(scope="module")
def gpt_run(text_sample, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpt")
    (tmp / "gpt.yaml").write_text(GPT_RECIPE)
    overrides = tiny_overrides(text_sample, tmp / "run", **{"trainer.max_steps": 2, "trainer.eval_every": 2,
                                                             "trainer.checkpoint_every": 2})
    return modalzoo.train(modalzoo.load_recipe(str(tmp / "gpt.yaml"), overrides))


@pytest.mark.slow
def test_generate_command_prints_the_prompt_and_its_continuation(gpt_run):
    result = run_cli("generate", str(gpt_run), "--prompt", "Return the number of", "--max-new-tokens", "6")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("Return the number of") and len(result.stdout) > len("Return the number of\n")


def test_generate_command_samples_with_its_seed(gpt_run, capsys):
    def sample(seed):
        assert main(["generate", str(gpt_run), "--prompt", "Return the", "--temperature", "1.5", "--top-p", "0.9",
                     "--seed", str(seed), "--max-new-tokens", "12"]) == 0
        return capsys.readouterr().out
    first = sample(1)
    assert first.startswith("Return the") and first == sample(1) != sample(2)


@pytest.mark.parametrize("args,message", [
    (["--prompt", ""], "the prompt is empty"),
    (["--prompt", "x", "--max-new-tokens", "0"], "max_new_tokens must be positive"),
    (["--prompt", "x", "--top-p", "1.5"], r"top_p must be in (0, 1]"),
    (["--prompt", "x", "--top-p", "0"], r"top_p must be in (0, 1]"),
    (["--prompt", "the " * 70], "but the model has max_positions=64; shorten the prompt"),
    (["--prompt", "the " * 40, "--max-new-tokens", "32"], "at most 23 new tokens fit (--max-new-tokens)"),
])
def test_generate_command_bad_input_is_one_line_and_exit_2(gpt_run, capsys, args, message):
    assert main(["generate", str(gpt_run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("modalzoo: error: ")


def test_generate_command_refuses_a_run_without_a_causal_target(text_sample, tmp_path, capsys):
    run_dir = tmp_path / "mlm"
    modalzoo.train(modalzoo.load_recipe("bert_mlm_tiny", tiny_overrides(text_sample, run_dir, **{
        "trainer.max_steps": 1, "trainer.eval_every": 1, "trainer.checkpoint_every": 1})))
    assert main(["generate", str(run_dir), "--prompt", "Return the"]) == 2
    assert "no causal LM target" in capsys.readouterr().err
