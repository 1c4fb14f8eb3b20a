"""mamba-lrp generate, what only Mamba-2 models have: the step's own Delta clamp, biases and
4 groups of an odd state, and the refusal of a Mamba-2 classifier. What both architectures do
(step mode against the full forward and the float64 reference, masks, eos, the batched
explanations against explain and the reference, conservation) runs on Mamba-2 models with 1
and 2 groups in test_generate.py (fixture any_lm)."""
import pytest

import fixtures
from test_generate import check_steps, generate, ids_arg, step_logits

VOCAB = fixtures.HF_MAMBA2_SMALL["vocab_size"]


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


def test_mamba2_classifier_refused(tmp_path):
    d = tmp_path / "clf"
    fixtures.write_mamba2_dir(d, {"num_labels": 2}, seed=2)
    p = generate(d, "--ids", "1,2", "--max-new-tokens", 2, check=False)
    assert p.returncode == 2 and "classifier" in p.stderr, p.stderr
