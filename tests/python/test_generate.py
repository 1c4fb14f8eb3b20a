"""mamba-lrp generate: greedy decoding with the recurrent state (step mode) and the
explanation of every generated token, against the full forward (`mamba-lrp forward`),
`mamba-lrp explain` of each prefix alone and the independent pure-PyTorch float64 references
(hf_mamba_reference.py for Mamba, mamba2_reference.py for Mamba-2). The tests of what both
architectures do run on a Mamba model and on Mamba-2 models with 1 and 2 groups (`any_lm`);
test_generate_mamba2.py holds what only Mamba-2 has."""
import dataclasses
import json
import pathlib
from typing import Callable

import pytest
import torch

import fixtures
import st_io
from cli import run
from hf_mamba_reference import MambaLMReference, explain as ref_explain
from mamba2_reference import Mamba2LMReference

VOCAB = fixtures.HF_MAMBA_SMALL["vocab_size"]


@dataclasses.dataclass
class GenModel:
    """A small LM directory, its architecture and how to write it again with config changes."""
    path: pathlib.Path
    model_type: str
    vocab: int
    write: Callable  # write(directory, config_overrides): the same weights' seed, changed config

    def reference(self):
        cls = Mamba2LMReference if self.model_type == "mamba2" else MambaLMReference
        return cls.from_dir(self.path, dtype=torch.float64)

    def ids(self, n, seed):
        return fixtures.random_ids(1, n, self.vocab, seed=seed)[0].tolist()


def mamba_lm(d):
    write = lambda path, over=None: fixtures.write_hf_mamba_dir(path, seed=3, config_overrides=over)
    write(d)
    return GenModel(d, "mamba", VOCAB, write)


def mamba2_lm(d, groups):
    write = lambda path, over=None: fixtures.write_mamba2_dir(path, {"n_groups": groups, **(over or {})},
                                                              seed=groups + 6)
    write(d)
    return GenModel(d, "mamba2", fixtures.HF_MAMBA2_SMALL["vocab_size"], write)


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return mamba_lm(tmp_path_factory.mktemp("gen_lm")).path


@pytest.fixture(scope="module", params=["mamba", "mamba2-groups1", "mamba2-groups2"])
def any_lm(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"gen_{request.param}")
    return mamba_lm(d) if request.param == "mamba" else mamba2_lm(d, int(request.param[-1]))


def generate(model, *args, check=True):
    p = run("generate", "--model", model, "--json", "-", *args, check=check)
    return p if not check else json.loads(p.stdout)


def step_logits(model, tmp_path, *args):
    out = tmp_path / "step_logits.safetensors"
    j = generate(model, *args, "--logits", out)
    return j, st_io.load_file(out)["logits"]


def full_logits(model, tmp_path, ids, mask=None):
    """`mamba-lrp forward` over the whole sequence at once: (L, V)."""
    path = tmp_path / "seq.safetensors"
    tensors = {"input_ids": torch.tensor([ids])}
    if mask is not None:
        tensors["attention_mask"] = torch.tensor([mask])
    fixtures.write_inputs(path, **tensors)
    out = tmp_path / "full.safetensors"
    run("forward", "--model", model, "--input", path, "--dtype", "float64", "--output", out)
    return st_io.load_file(out)["logits"][0]


def ids_arg(ids):
    return ",".join(map(str, ids))


# ---- step mode against the full forward ----------------------------------------------------

# float64 throughout: the step runs the recurrence with plain tensor ops, the full forward the
# scan kernel; both sum the same terms in different orders, so they agree to ~1e-13 relative.
STEP_RTOL = 1e-10


def check_steps(model, tmp_path, prompt, j, steps, mask=None):
    gen = j["generated_ids"]
    assert j["prompt_ids"] == prompt and len(gen) == steps.shape[0]
    full_mask = None if mask is None else mask + [1] * (len(gen) - 1)
    full = full_logits(model, tmp_path, prompt + gen[:-1], full_mask)  # (P + G - 1, V)
    P = len(prompt)
    want = full[P - 1:]
    assert steps.dtype == torch.float64 and steps.shape == want.shape
    err = ((steps - want).abs().max() / want.abs().max()).item()
    assert err < STEP_RTOL, err
    # Greedy: each generated id is the first argmax of its step's logits (the full forward's).
    assert gen == [int(torch.argmax(row)) for row in want]


def test_step_logits_equal_full_forward(any_lm, tmp_path):
    """Prompt 9, 12 steps (Mamba-2: the state crosses several chunk_size-4 boundaries of the
    forward), against the full forward and the reference over the whole sequence."""
    prompt = any_lm.ids(9, seed=11)
    j, steps = step_logits(any_lm.path, tmp_path, "--ids", ids_arg(prompt), "--max-new-tokens", 12,
                           "--dtype", "float64")
    assert len(j["generated_ids"]) == 12 and j["model_type"] == any_lm.model_type
    check_steps(any_lm.path, tmp_path, prompt, j, steps)
    gen = j["generated_ids"]
    ref = any_lm.reference()(torch.tensor([prompt + gen[:-1]]))[0, len(prompt) - 1:]
    assert ((steps - ref).abs().max() / ref.abs().max()).item() < STEP_RTOL


def test_greedy_equals_reference_recompute(any_lm):
    """The reference recomputes the whole prefix for every new token (pure PyTorch)."""
    prompt = any_lm.ids(6, seed=12)
    j = generate(any_lm.path, "--ids", ids_arg(prompt), "--max-new-tokens", 8, "--dtype", "float64")
    ref = any_lm.reference()
    seq = list(prompt)
    for _ in range(8):
        seq.append(int(torch.argmax(ref(torch.tensor([seq]))[0, -1])))
    assert j["generated_ids"] == seq[len(prompt):]


def test_step_logits_with_prompt_mask(any_lm, tmp_path):
    """A left-padded prompt: the full forward with the mask, and the unpadded prompt, agree."""
    prompt = any_lm.ids(7, seed=13)
    padded, mask = [5, 9, 2] + prompt, [0, 0, 0] + [1] * len(prompt)
    path = tmp_path / "padded.safetensors"
    fixtures.write_inputs(path, input_ids=torch.tensor([padded]), attention_mask=torch.tensor([mask]))
    j, steps = step_logits(any_lm.path, tmp_path, "--input", path, "--max-new-tokens", 10, "--dtype", "float64")
    check_steps(any_lm.path, tmp_path, padded, j, steps, mask)
    j_plain, steps_plain = step_logits(any_lm.path, tmp_path, "--ids", ids_arg(prompt), "--max-new-tokens", 10,
                                       "--dtype", "float64")
    assert j["generated_ids"] == j_plain["generated_ids"]
    assert torch.allclose(steps, steps_plain, rtol=0, atol=1e-10 * steps_plain.abs().max().item())


def test_prompt_shorter_than_conv_window(any_lm, tmp_path):
    """One prompt token: the conv window starts with zeros (conv_kernel 4)."""
    j, steps = step_logits(any_lm.path, tmp_path, "--ids", "17", "--max-new-tokens", 5, "--dtype", "float64")
    check_steps(any_lm.path, tmp_path, [17], j, steps)


def test_long_prompt(lm, tmp_path):
    """Far longer than anything the model saw: no length limit but memory."""
    prompt = fixtures.random_ids(1, 3000, VOCAB, seed=14)[0].tolist()
    path = tmp_path / "long.safetensors"
    fixtures.write_inputs(path, input_ids=torch.tensor(prompt))
    j, steps = step_logits(lm, tmp_path, "--input", path, "--max-new-tokens", 4, "--dtype", "float64")
    check_steps(lm, tmp_path, prompt, j, steps)


def test_float32_generation_matches_float64(any_lm):
    prompt = any_lm.ids(8, seed=15)
    a = generate(any_lm.path, "--ids", ids_arg(prompt), "--max-new-tokens", 6)
    b = generate(any_lm.path, "--ids", ids_arg(prompt), "--max-new-tokens", 6, "--dtype", "float64")
    assert a["generated_ids"] == b["generated_ids"]


# ---- stopping and edge cases ---------------------------------------------------------------

def test_eos_stops_generation(any_lm, tmp_path):
    prompt = any_lm.ids(8, seed=16)
    free = generate(any_lm.path, "--ids", ids_arg(prompt), "--max-new-tokens", 8)["generated_ids"]
    # The first token that differs from every token before it: eos there stops at that step.
    # (A model that repeats one token throughout stops at the first: k = 0.)
    k = next((i for i in range(1, len(free)) if free[i] not in free[:i]), 0)
    d = tmp_path / "eos_model"
    any_lm.write(d, {"eos_token_id": free[k]})
    j = generate(d, "--ids", ids_arg(prompt), "--max-new-tokens", 8)
    assert j["generated_ids"] == free[:k + 1]


def test_max_new_tokens_zero(any_lm):
    j = generate(any_lm.path, "--ids", "1,2,3", "--max-new-tokens", 0, "--explain")
    assert j["prompt_ids"] == [1, 2, 3] and j["generated_ids"] == [] and j["explanations"] == []


@pytest.mark.parametrize("args,message", [
    (["--ids", "1,2", "--max-new-tokens", "-1"], "--max-new-tokens"),
    (["--ids", "1,2", "--max-new-tokens", "two"], "--max-new-tokens"),
    (["--ids", "1,2"], "--max-new-tokens"),
    (["--ids", "1,2", "--max-new-tokens", "3", "--target", "4"], "--target"),
    (["--ids", "1,2", "--max-new-tokens", "3", "--dtype", "float16"], "--dtype"),
    (["--ids", "1,2", "--max-new-tokens", "3", "--method", "nope"], "nope"),
    (["--ids", "1,2", "--max-new-tokens", "3", "--frobnicate", "1"], "--frobnicate"),
    (["--ids", "1,999", "--max-new-tokens", "3"], "999"),
    (["--ids", "", "--max-new-tokens", "3"], "--ids"),
    (["--max-new-tokens", "3"], "--input"),
    (["--ids", "1", "--max-new-tokens"], "--max-new-tokens"),
])
def test_bad_options_exit_2(lm, args, message):
    p = generate(lm, *args, check=False)
    assert p.returncode == 2, p.stderr
    assert message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_empty_prompt_exit_2(any_lm, tmp_path):
    path = tmp_path / "empty.safetensors"
    fixtures.write_inputs(path, input_ids=torch.zeros((1, 0), dtype=torch.long))
    p = generate(any_lm.path, "--input", path, "--max-new-tokens", 3, check=False)
    assert p.returncode == 2 and "empty" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_fully_masked_prompt_exit_2(lm, tmp_path):
    path = tmp_path / "masked.safetensors"
    fixtures.write_inputs(path, input_ids=torch.tensor([[1, 2]]), attention_mask=torch.tensor([[0, 0]]))
    p = generate(lm, "--input", path, "--max-new-tokens", 3, check=False)
    assert p.returncode == 2 and "mask" in p.stderr, p.stderr


def test_classifier_and_vim_refused(tmp_path):
    clf = tmp_path / "clf"
    fixtures.write_hf_mamba_dir(clf, config_overrides={"num_labels": 2}, seed=2)
    p = generate(clf, "--ids", "1,2", "--max-new-tokens", 2, check=False)
    assert p.returncode == 2 and "classifier" in p.stderr, p.stderr
    vim = tmp_path / "vim"
    fixtures.write_vim_dir(vim)
    p = generate(vim, "--ids", "1,2", "--max-new-tokens", 2, check=False)
    assert p.returncode == 2 and "Mamba language model" in p.stderr, p.stderr


# ---- explanations ----------------------------------------------------------------------------

# float64: the batched backward and explain() run the same rules in different orders (one
# (G, ...) cotangent batch against one row); rounding only.
EXPLAIN_RTOL = 1e-9


def single_explain(model, tmp_path, ids, target, method, mask=None):
    path = tmp_path / "prefix.safetensors"
    tensors = {"input_ids": torch.tensor([ids])}
    if mask is not None:
        tensors["attention_mask"] = torch.tensor([mask])
    fixtures.write_inputs(path, **tensors)
    p = run("explain", "--model", model, "--input", path, "--method", method, "--target", target,
            "--dtype", "float64", "--json", "-")
    return json.loads(p.stdout)["explanations"][0]


def close(a, b, scale):
    return (torch.tensor(a) - torch.tensor(b)).abs().max().item() <= EXPLAIN_RTOL * scale


@pytest.mark.parametrize("method", ["mambalrp", "gi"])
@pytest.mark.parametrize("masked", [False, True])
def test_each_explanation_equals_single_explain(any_lm, tmp_path, method, masked):
    lm = any_lm.path
    prompt = any_lm.ids(7, seed=21)
    mask = None
    if masked:
        prompt, mask = [3, 4] + prompt, [0, 0] + [1] * len(prompt)
        path = tmp_path / "p.safetensors"
        fixtures.write_inputs(path, input_ids=torch.tensor([prompt]), attention_mask=torch.tensor([mask]))
        src = ["--input", path]
    else:
        src = ["--ids", ids_arg(prompt)]
    j = generate(lm, *src, "--max-new-tokens", 6, "--explain", "--method", method, "--dtype", "float64")
    gen, P = j["generated_ids"], len(prompt)
    assert j["model_type"] == any_lm.model_type
    assert j["method"] == method and len(j["explanations"]) == len(gen) == 6
    ref = any_lm.reference()
    seq = prompt + gen
    for k, e in enumerate(j["explanations"]):
        assert e["target"] == gen[k] and e["position"] == P - 1 + k
        assert len(e["relevance"]) == P + k
        assert abs(e["relevance_sum"] - sum(e["relevance"])) <= 1e-12 * max(1.0, abs(e["relevance_sum"]))
        prefix_mask = None if mask is None else mask + [1] * k
        one = single_explain(lm, tmp_path, seq[:P + k], gen[k], method, prefix_mask)
        scale = max(map(abs, one["relevance"]))
        assert close(e["relevance"], one["relevance"], scale), (k, e["relevance"], one["relevance"])
        assert abs(e["logit"] - one["logit"]) <= 1e-10 * abs(one["logit"])
        # and the independent reference
        m = None if prefix_mask is None else torch.tensor([prefix_mask])
        r, f, _ = ref_explain(ref, torch.tensor([seq[:P + k]]), "standard" if method == "gi" else method,
                              target=gen[k], attention_mask=m)
        assert close(e["relevance"], r[0].tolist(), scale)
        if masked:
            assert e["relevance"][:2] == [0.0, 0.0]


def test_batched_explanation_conserves_with_zero_bias(any_lm):
    """Every bias zero: sum R = f for each generated token (MambaLRP's conservation)."""
    j = generate(any_lm.path, "--ids", "5,9,13,2,40", "--max-new-tokens", 5, "--explain", "--zero-bias",
                 "--dtype", "float64")
    for e in j["explanations"]:
        assert abs(e["relevance_sum"] - e["logit"]) <= 1e-9 * abs(e["logit"])


def weighted_distance_quantile(relevance, q):
    """Independent of the C++: sort by distance, the first distance whose |R| share reaches q."""
    pos = len(relevance) - 1
    w = [abs(r) for r in relevance]
    total = sum(w)
    acc = 0.0
    for d in range(pos + 1):
        acc += w[pos - d] / total
        if acc >= q - 1e-12:
            return d
    return pos


def test_long_range_summary(any_lm):
    j = generate(any_lm.path, "--ids", ids_arg(any_lm.ids(20, seed=22)), "--max-new-tokens", 4, "--explain",
                 "--dtype", "float64")
    for e in j["explanations"]:
        assert e["distance_median"] == weighted_distance_quantile(e["relevance"], 0.5)
        assert e["distance_p90"] == weighted_distance_quantile(e["relevance"], 0.9)
        assert 0 <= e["distance_median"] <= e["distance_p90"] <= e["position"]


def test_html_matrix(any_lm, tmp_path):
    html = tmp_path / "gen.html"
    j = generate(any_lm.path, "--ids", "1,2,3,4", "--max-new-tokens", 3, "--explain", "--html", html)
    text = html.read_text()
    assert text.count('<tr id="gen') == 3
    # one shaded cell per context position of each row: 4 + 5 + 6
    assert text.count("data-relevance=") == 4 + 5 + 6
    for e in j["explanations"]:
        assert f"{e['distance_p90']}</td>" in text
