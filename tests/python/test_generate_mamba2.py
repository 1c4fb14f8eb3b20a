"""mamba-lrp generate on Mamba-2 models: the step mode (conv window of xBC and the P x N state
per head carried from token to token) against the full forward (`mamba-lrp forward`) and the
independent float64 reference (mamba2_reference.py, a loop written from the equations); each
explanation against `mamba-lrp explain` of that prefix alone and the reference's explanation."""
import pytest
import torch

import fixtures
from hf_mamba_reference import explain as ref_explain
from mamba2_reference import Mamba2LMReference
from test_generate import (EXPLAIN_RTOL, STEP_RTOL, check_steps, close, generate, ids_arg, single_explain,
                           step_logits, weighted_distance_quantile)

VOCAB = fixtures.HF_MAMBA2_SMALL["vocab_size"]


@pytest.fixture(scope="module", params=[1, 2], ids=["groups1", "groups2"])
def lm2(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"gen_mamba2_g{request.param}")
    fixtures.write_mamba2_dir(d, {"n_groups": request.param}, seed=request.param + 6)
    return d


# ---- step mode -----------------------------------------------------------------------------------

def test_step_logits_equal_full_forward(lm2, tmp_path):
    """Prompt 9, 12 steps: the state crosses several chunk_size-4 boundaries of the forward."""
    prompt = fixtures.random_ids(1, 9, VOCAB, seed=31)[0].tolist()
    j, steps = step_logits(lm2, tmp_path, "--ids", ids_arg(prompt), "--max-new-tokens", 12, "--dtype", "float64")
    assert len(j["generated_ids"]) == 12
    check_steps(lm2, tmp_path, prompt, j, steps)
    # and the reference over the whole sequence (float64, rounding only)
    gen = j["generated_ids"]
    ref = Mamba2LMReference.from_dir(lm2, dtype=torch.float64)(torch.tensor([prompt + gen[:-1]]))[0, len(prompt) - 1:]
    assert ((steps - ref).abs().max() / ref.abs().max()).item() < STEP_RTOL


def test_greedy_equals_reference_recompute(lm2):
    """The reference recomputes the whole prefix for every new token."""
    prompt = fixtures.random_ids(1, 6, VOCAB, seed=32)[0].tolist()
    j = generate(lm2, "--ids", ids_arg(prompt), "--max-new-tokens", 8, "--dtype", "float64")
    ref = Mamba2LMReference.from_dir(lm2, dtype=torch.float64)
    seq = list(prompt)
    for _ in range(8):
        seq.append(int(torch.argmax(ref(torch.tensor([seq]))[0, -1])))
    assert j["generated_ids"] == seq[len(prompt):]


def test_step_logits_with_prompt_mask(lm2, tmp_path):
    """A left-padded prompt: the full forward with the mask, and the unpadded prompt, agree."""
    prompt = fixtures.random_ids(1, 7, VOCAB, seed=33)[0].tolist()
    padded, mask = [5, 9, 2] + prompt, [0, 0, 0] + [1] * len(prompt)
    path = tmp_path / "padded.safetensors"
    fixtures.write_inputs(path, input_ids=torch.tensor([padded]), attention_mask=torch.tensor([mask]))
    j, steps = step_logits(lm2, tmp_path, "--input", path, "--max-new-tokens", 10, "--dtype", "float64")
    check_steps(lm2, tmp_path, padded, j, steps, mask)
    j_plain, steps_plain = step_logits(lm2, tmp_path, "--ids", ids_arg(prompt), "--max-new-tokens", 10,
                                       "--dtype", "float64")
    assert j["generated_ids"] == j_plain["generated_ids"]
    assert torch.allclose(steps, steps_plain, rtol=0, atol=1e-10 * steps_plain.abs().max().item())


def test_prompt_shorter_than_conv_window(lm2, tmp_path):
    """One prompt token: the conv window starts with zeros (conv_kernel 4)."""
    j, steps = step_logits(lm2, tmp_path, "--ids", "17", "--max-new-tokens", 5, "--dtype", "float64")
    check_steps(lm2, tmp_path, [17], j, steps)


@pytest.mark.parametrize("variant", ["dt_limit", "untied_bias", "groups4_state17"])
def test_step_logits_variants(tmp_path, variant):
    """The step's own Delta clamp, the in_proj/conv/out_proj biases, 4 groups of an odd state."""
    over = {"dt_limit": {"time_step_limit": [0.02, 0.05]},
            "untied_bias": {"tie_word_embeddings": False, "use_bias": True},
            "groups4_state17": {"n_groups": 4, "state_size": 17}}[variant]
    d = tmp_path / "m"
    fixtures.write_mamba2_dir(d, over, seed=5)
    prompt = fixtures.random_ids(1, 6, VOCAB, seed=34)[0].tolist()
    j, steps = step_logits(d, tmp_path, "--ids", ids_arg(prompt), "--max-new-tokens", 7, "--dtype", "float64")
    check_steps(d, tmp_path, prompt, j, steps)


def test_float32_generation_matches_float64(lm2):
    prompt = fixtures.random_ids(1, 8, VOCAB, seed=35)[0].tolist()
    a = generate(lm2, "--ids", ids_arg(prompt), "--max-new-tokens", 6)
    b = generate(lm2, "--ids", ids_arg(prompt), "--max-new-tokens", 6, "--dtype", "float64")
    assert a["generated_ids"] == b["generated_ids"]


# ---- stopping and edge cases -----------------------------------------------------------------------

def test_eos_stops_generation(tmp_path):
    prompt = fixtures.random_ids(1, 8, VOCAB, seed=36)[0].tolist()
    d = tmp_path / "free"
    fixtures.write_mamba2_dir(d, seed=7)
    free = generate(d, "--ids", ids_arg(prompt), "--max-new-tokens", 8)["generated_ids"]
    # The first token that differs from every token before it: eos there stops at that step.
    k = next((i for i in range(1, len(free)) if free[i] not in free[:i]), 0)
    e = tmp_path / "eos"
    fixtures.write_mamba2_dir(e, {"eos_token_id": free[k]}, seed=7)
    j = generate(e, "--ids", ids_arg(prompt), "--max-new-tokens", 8)
    assert j["generated_ids"] == free[:k + 1]


def test_max_new_tokens_zero(lm2):
    j = generate(lm2, "--ids", "1,2,3", "--max-new-tokens", 0, "--explain")
    assert j["prompt_ids"] == [1, 2, 3] and j["generated_ids"] == [] and j["explanations"] == []


def test_empty_prompt_exit_2(lm2, tmp_path):
    path = tmp_path / "empty.safetensors"
    fixtures.write_inputs(path, input_ids=torch.zeros((1, 0), dtype=torch.long))
    p = generate(lm2, "--input", path, "--max-new-tokens", 3, check=False)
    assert p.returncode == 2 and "empty" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_mamba2_classifier_refused(tmp_path):
    d = tmp_path / "clf"
    fixtures.write_mamba2_dir(d, {"num_labels": 2}, seed=2)
    p = generate(d, "--ids", "1,2", "--max-new-tokens", 2, check=False)
    assert p.returncode == 2 and "classifier" in p.stderr, p.stderr


# ---- explanations --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["mambalrp", "gi"])
@pytest.mark.parametrize("masked", [False, True])
def test_each_explanation_equals_single_explain(lm2, tmp_path, method, masked):
    prompt = fixtures.random_ids(1, 7, VOCAB, seed=41)[0].tolist()
    mask = None
    if masked:
        prompt, mask = [3, 4] + prompt, [0, 0] + [1] * len(prompt)
        path = tmp_path / "p.safetensors"
        fixtures.write_inputs(path, input_ids=torch.tensor([prompt]), attention_mask=torch.tensor([mask]))
        src = ["--input", path]
    else:
        src = ["--ids", ids_arg(prompt)]
    j = generate(lm2, *src, "--max-new-tokens", 6, "--explain", "--method", method, "--dtype", "float64")
    gen, P = j["generated_ids"], len(prompt)
    assert j["model_type"] == "mamba2"
    assert j["method"] == method and len(j["explanations"]) == len(gen) == 6
    ref = Mamba2LMReference.from_dir(lm2, dtype=torch.float64)
    seq = prompt + gen
    for k, e in enumerate(j["explanations"]):
        assert e["target"] == gen[k] and e["position"] == P - 1 + k and len(e["relevance"]) == P + k
        prefix_mask = None if mask is None else mask + [1] * k
        one = single_explain(lm2, tmp_path, seq[:P + k], gen[k], method, prefix_mask)
        scale = max(map(abs, one["relevance"]))
        assert close(e["relevance"], one["relevance"], scale), (k, e["relevance"], one["relevance"])
        assert abs(e["logit"] - one["logit"]) <= 1e-10 * abs(one["logit"])
        m = None if prefix_mask is None else torch.tensor([prefix_mask])
        r, _, _ = ref_explain(ref, torch.tensor([seq[:P + k]]), "standard" if method == "gi" else method,
                              target=gen[k], attention_mask=m)
        assert close(e["relevance"], r[0].tolist(), scale)
        if masked:
            assert e["relevance"][:2] == [0.0, 0.0]


def test_explanation_conserves_with_zero_bias(lm2):
    """Every bias zero: sum R = f for each generated token (MambaLRP's conservation, float64)."""
    j = generate(lm2, "--ids", "5,9,13,2,40", "--max-new-tokens", 5, "--explain", "--zero-bias", "--dtype", "float64")
    for e in j["explanations"]:
        assert abs(e["relevance_sum"] - e["logit"]) <= 1e-9 * abs(e["logit"])


def test_long_range_summary_and_html(lm2, tmp_path):
    html = tmp_path / "gen.html"
    j = generate(lm2, "--ids", ids_arg(fixtures.random_ids(1, 12, VOCAB, seed=42)[0].tolist()),
                 "--max-new-tokens", 4, "--explain", "--dtype", "float64", "--html", html)
    for e in j["explanations"]:
        assert e["distance_median"] == weighted_distance_quantile(e["relevance"], 0.5)
        assert e["distance_p90"] == weighted_distance_quantile(e["relevance"], 0.9)
    text = html.read_text()
    assert text.count('<tr id="gen') == 4 and text.count("data-relevance=") == 12 + 13 + 14 + 15
