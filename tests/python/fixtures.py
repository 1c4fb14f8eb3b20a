"""Small random model directories for the tests (C++ and Python), written in the formats of
DESIGN.md §4, with an initialisation close to the real models' so that the numbers are
realistic (state decays exp(dt A) in (0, 1), dt in [1e-3, 1e-1], D = 1, ...).

    cfg, sd = write_hf_mamba_dir(path, config_overrides=None, seed=0, dtype=torch.float32,
                                 shards=1, state_spaces=False)
        Hugging Face Mamba: config.json + model.safetensors (or `shards` files with
        model.safetensors.index.json). Default: 2 layers, hidden 32, state 4, vocab 64,
        conv 4, expand 2, rank "auto", use_bias false, use_conv_bias true, tied head.
        Overrides are HF keys; "num_labels": n writes an untied lm_head of n rows (the
        classifier form); tie_word_embeddings false writes an untied lm_head of vocab rows.
        state_spaces=True writes the original state-spaces format instead (d_model, n_layer,
        ssm_cfg; backbone.embedding.weight).
        dtype: the stored dtype (float32, float64, float16, bfloat16).
        Returns (the config dict written, the state dict in float32 with HF names).

    cfg, sd = write_vim_dir(path, config_overrides=None, seed=0, dtype=torch.float32,
                            pth=False)
        Vision Mamba v2: config.json + model.safetensors, or with pth=True a Vim-style
        checkpoint `checkpoint.pth` = torch.save({"model": state_dict}). Default: 16x16
        images, patch 8 (4 patches), 3 channels, embed 16, depth 2, d_state 4, 3 classes,
        RMSNorm, middle cls token, mean pool, abs pos embed, if_devide_out true.

    cfg, sd = write_mamba2_dir(path, config_overrides=None, seed=0, dtype=torch.float32, shards=1,
                               mamba_ssm=False, pytorch_bin=False)
        Mamba-2 (HF_MAMBA2_SMALL: 2 layers, hidden 32, 8 heads of 8, state 8, 1 group, chunk 4,
        time_step_limit [0, Infinity]); mamba_ssm=True writes mamba_ssm's format, pytorch_bin a
        torch.save'd pytorch_model.bin.

    write_inputs(path, **tensors)   safetensors with input_ids / attention_mask / pixel_values
    random_hf_mamba_state(cfg, seed), random_vim_state(cfg, seed)   (no files)
"""
import json
import math
import os

import torch

import st_io
from hf_mamba_reference import mamba_config
from vim_reference import vim_config

HF_MAMBA_SMALL = {
    "model_type": "mamba",
    "architectures": ["MambaForCausalLM"],
    "vocab_size": 64,
    "hidden_size": 32,
    "state_size": 4,
    "num_hidden_layers": 2,
    "layer_norm_epsilon": 1e-5,
    "expand": 2,
    "conv_kernel": 4,
    "time_step_rank": "auto",
    "hidden_act": "silu",
    "use_bias": False,
    "use_conv_bias": True,
    "residual_in_fp32": True,
    "tie_word_embeddings": True,
    "pad_token_id": 0,
    "bos_token_id": 0,
    "eos_token_id": 0,
}

VIM_SMALL = {
    "model_type": "vim",
    "img_size": 16,
    "patch_size": 8,
    "in_chans": 3,
    "embed_dim": 16,
    "depth": 2,
    "d_state": 4,
    "d_conv": 4,
    "expand": 2,
    "num_classes": 3,
    "norm_epsilon": 1e-5,
    "rms_norm": True,
    "residual_in_fp32": True,
    "final_pool_type": "mean",
    "if_abs_pos_embed": True,
    "bimamba_type": "v2",
    "if_cls_token": True,
    "use_middle_cls_token": True,
    "if_devide_out": True,
}


def _uniform(g, shape, bound):
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound


def _normal(g, shape, std):
    return torch.randn(shape, generator=g, dtype=torch.float64) * std


def _mixer_params(g, d_model, d_inner, d_state, d_conv, dt_rank, conv_bias, bias, suffix=""):
    """One direction's parameters, Mamba's initialisation."""
    p = {}
    p[f"conv1d{suffix}.weight"] = _uniform(g, (d_inner, 1, d_conv), 1 / math.sqrt(d_conv))
    if conv_bias:
        p[f"conv1d{suffix}.bias"] = _uniform(g, (d_inner,), 1 / math.sqrt(d_conv))
    p[f"x_proj{suffix}.weight"] = _uniform(g, (dt_rank + 2 * d_state, d_inner), 1 / math.sqrt(d_inner))
    p[f"dt_proj{suffix}.weight"] = _uniform(g, (d_inner, dt_rank), dt_rank ** -0.5)
    # softplus(dt_bias) log-uniform in [1e-3, 1e-1]
    dt = torch.exp(torch.rand(d_inner, generator=g, dtype=torch.float64)
                   * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
    p[f"dt_proj{suffix}.bias"] = dt + torch.log(-torch.expm1(-dt))
    a_log = torch.log(torch.arange(1, d_state + 1, dtype=torch.float64)).repeat(d_inner, 1)
    p["A_b_log" if suffix else "A_log"] = a_log
    p[f"D{suffix}"] = torch.ones(d_inner, dtype=torch.float64)
    return p


def random_hf_mamba_state(config, seed=0):
    cfg = mamba_config(config)
    g = torch.Generator().manual_seed(seed)
    H, Di, N, K, R = (cfg["hidden_size"], cfg["intermediate_size"], cfg["state_size"],
                      cfg["conv_kernel"], cfg["time_step_rank"])
    sd = {"backbone.embeddings.weight": _normal(g, (cfg["vocab_size"], H), 1.0)}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"backbone.layers.{i}."
        sd[pre + "norm.weight"] = 1 + _normal(g, (H,), 0.1)
        m = pre + "mixer."
        sd[m + "in_proj.weight"] = _uniform(g, (2 * Di, H), 1 / math.sqrt(H))
        if cfg["use_bias"]:
            sd[m + "in_proj.bias"] = _uniform(g, (2 * Di,), 0.1)
        for k, v in _mixer_params(g, H, Di, N, K, R, cfg["use_conv_bias"], cfg["use_bias"]).items():
            sd[m + k] = v
        sd[m + "out_proj.weight"] = _uniform(g, (H, Di), 1 / math.sqrt(Di))
        if cfg["use_bias"]:
            sd[m + "out_proj.bias"] = _uniform(g, (H,), 0.1)
    return _with_final_norm_and_head(g, sd, cfg, config.get("num_labels"), H)


def _with_final_norm_and_head(g, sd, cfg, num_labels, H):
    """The end of a Mamba-1 or Mamba-2 LM state dict: the final norm, then a classifier head
    (num_labels rows) or, untied, the LM head; every tensor in float32."""
    sd["backbone.norm_f.weight"] = 1 + _normal(g, (H,), 0.1)
    if num_labels:
        sd["lm_head.weight"] = _normal(g, (num_labels, H), 1 / math.sqrt(H))
    elif not cfg["tie_word_embeddings"]:
        sd["lm_head.weight"] = _normal(g, (cfg["vocab_size"], H), 1 / math.sqrt(H))
    return {k: v.float() for k, v in sd.items()}


def _write_weights(path, sd, dtype, shards=1):
    stored = {k: v.to(dtype) for k, v in sd.items()}
    if shards <= 1:
        st_io.save_file(stored, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
        return
    names = sorted(stored)
    weight_map = {}
    for s in range(shards):
        part = names[s::shards]
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        st_io.save_file({k: stored[k] for k in part}, os.path.join(path, fname),
                        metadata={"format": "pt"})
        weight_map.update({k: fname for k in part})
    total = sum(v.numel() * v.element_size() for v in stored.values())
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def write_hf_mamba_dir(path, config_overrides=None, seed=0, dtype=torch.float32, shards=1,
                       state_spaces=False):
    os.makedirs(path, exist_ok=True)
    config = dict(HF_MAMBA_SMALL)
    config.update(config_overrides or {})
    if config.get("num_labels"):
        config["tie_word_embeddings"] = False
    sd = random_hf_mamba_state(config, seed)
    cfg = mamba_config(config)
    if state_spaces:
        written = {
            "d_model": cfg["hidden_size"], "n_layer": cfg["num_hidden_layers"],
            "vocab_size": cfg["vocab_size"],
            "ssm_cfg": {"d_state": cfg["state_size"], "d_conv": cfg["conv_kernel"],
                        "expand": cfg["expand"]},
            "rms_norm": True, "residual_in_fp32": cfg["residual_in_fp32"],
            "fused_add_norm": True, "pad_vocab_size_multiple": 1,
            "tie_embeddings": cfg["tie_word_embeddings"],
        }
        file_sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in sd.items()}
        if "lm_head.weight" not in file_sd:
            # the state-spaces checkpoints store the tied head explicitly
            file_sd["lm_head.weight"] = file_sd["backbone.embedding.weight"]
            file_sd = {k: v.clone() for k, v in file_sd.items()}
    else:
        written = dict(config)
        file_sd = sd
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(written, f, indent=2)
    _write_weights(path, file_sd, dtype, shards)
    return written, sd


def random_vim_state(config, seed=0):
    cfg = vim_config(config)
    g = torch.Generator().manual_seed(seed)
    D, Di, N, K, R = cfg["embed_dim"], cfg["d_inner"], cfg["d_state"], cfg["d_conv"], cfg["dt_rank"]
    C, P = cfg["in_chans"], cfg["patch_size"]
    sd = {
        "patch_embed.proj.weight": _uniform(g, (D, C, P, P), 1 / math.sqrt(C * P * P)),
        "patch_embed.proj.bias": _uniform(g, (D,), 1 / math.sqrt(C * P * P)),
    }
    n_tokens = cfg["num_patches"] + (1 if cfg["if_cls_token"] else 0)
    if cfg["if_cls_token"]:
        sd["cls_token"] = _normal(g, (1, 1, D), 0.5)
    if cfg["if_abs_pos_embed"]:
        sd["pos_embed"] = _normal(g, (1, n_tokens, D), 0.2)
    for i in range(cfg["depth"]):
        pre = f"layers.{i}."
        sd[pre + "norm.weight"] = 1 + _normal(g, (D,), 0.1)
        if not cfg["rms_norm"]:
            sd[pre + "norm.bias"] = _normal(g, (D,), 0.05)
        m = pre + "mixer."
        sd[m + "in_proj.weight"] = _uniform(g, (2 * Di, D), 1 / math.sqrt(D))
        for s in (["", "_b"] if cfg["bimamba_type"] == "v2" else [""]):
            for k, v in _mixer_params(g, D, Di, N, K, R, True, False, suffix=s).items():
                sd[m + k] = v
        sd[m + "out_proj.weight"] = _uniform(g, (D, Di), 1 / math.sqrt(Di))
    sd["norm_f.weight"] = 1 + _normal(g, (D,), 0.1)
    if not cfg["rms_norm"]:
        sd["norm_f.bias"] = _normal(g, (D,), 0.05)
    if cfg["num_classes"] > 0:
        sd["head.weight"] = _normal(g, (cfg["num_classes"], D), 1 / math.sqrt(D))
        sd["head.bias"] = _uniform(g, (cfg["num_classes"],), 0.1)
    return {k: v.float() for k, v in sd.items()}


def write_vim_dir(path, config_overrides=None, seed=0, dtype=torch.float32, pth=False):
    os.makedirs(path, exist_ok=True)
    config = dict(VIM_SMALL)
    config.update(config_overrides or {})
    sd = random_vim_state(config, seed)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    stored = {k: v.to(dtype) for k, v in sd.items()}
    if pth:
        torch.save({"model": stored, "epoch": 0}, os.path.join(path, "checkpoint.pth"))
    else:
        st_io.save_file(stored, os.path.join(path, "model.safetensors"))
    return config, sd


def write_inputs(path, **tensors):
    """Write input tensors (input_ids, attention_mask, pixel_values, ...) to a safetensors file."""
    st_io.save_file({k: torch.as_tensor(v) for k, v in tensors.items()}, path)


def random_ids(batch, length, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (batch, length), generator=g)


def random_pixels(batch, config_overrides=None, seed=0):
    """Standard-normal pixel_values (B, C, H, W) for write_vim_dir's model with these overrides."""
    cfg = vim_config(dict(VIM_SMALL, **(config_overrides or {})))
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"]), generator=g)


# ---- Mamba-2 ---------------------------------------------------------------------------------

HF_MAMBA2_SMALL = {
    "model_type": "mamba2",
    "architectures": ["Mamba2ForCausalLM"],
    "vocab_size": 64,
    "hidden_size": 32,
    "state_size": 8,
    "num_hidden_layers": 2,
    "layer_norm_epsilon": 1e-5,
    "expand": 2,
    "num_heads": 8,
    "head_dim": 8,
    "n_groups": 1,
    "conv_kernel": 4,
    "chunk_size": 4,
    "hidden_act": "silu",
    "use_bias": False,
    "use_conv_bias": True,
    "residual_in_fp32": True,
    "rms_norm": True,
    "time_step_limit": [0.0, math.inf],   # json.dump writes Infinity, as HF's configs hold
    "tie_word_embeddings": True,
}


def random_mamba2_state(config, seed=0):
    """HF tensor names; mamba_ssm's initialisation (A in [1, 16], dt log-uniform in [1e-3, 1e-1])."""
    from mamba2_reference import mamba2_config
    cfg = mamba2_config(config)
    g = torch.Generator().manual_seed(seed)
    Hd, I, N, K, G, H = (cfg["hidden_size"], cfg["intermediate_size"], cfg["state_size"], cfg["conv_kernel"],
                         cfg["n_groups"], cfg["num_heads"])
    conv_dim = I + 2 * G * N
    proj = I + conv_dim + H
    sd = {"backbone.embeddings.weight": _normal(g, (cfg["vocab_size"], Hd), 1.0)}
    for i in range(cfg["num_hidden_layers"]):
        pre = f"backbone.layers.{i}."
        sd[pre + "norm.weight"] = 1 + _normal(g, (Hd,), 0.1)
        m = pre + "mixer."
        sd[m + "in_proj.weight"] = _uniform(g, (proj, Hd), 1 / math.sqrt(Hd))
        if cfg["use_bias"]:
            sd[m + "in_proj.bias"] = _uniform(g, (proj,), 0.1)
        sd[m + "conv1d.weight"] = _uniform(g, (conv_dim, 1, K), 1 / math.sqrt(K))
        if cfg["use_conv_bias"]:
            sd[m + "conv1d.bias"] = _uniform(g, (conv_dim,), 1 / math.sqrt(K))
        dt = torch.exp(torch.rand(H, generator=g, dtype=torch.float64) * (math.log(0.1) - math.log(1e-3))
                       + math.log(1e-3)).clamp(min=1e-4)
        sd[m + "dt_bias"] = dt + torch.log(-torch.expm1(-dt))
        sd[m + "A_log"] = torch.log(1 + 15 * torch.rand(H, generator=g, dtype=torch.float64))
        sd[m + "D"] = 1 + _normal(g, (H,), 0.1)
        sd[m + "norm.weight"] = 1 + _normal(g, (I,), 0.1)
        sd[m + "out_proj.weight"] = _uniform(g, (Hd, I), 1 / math.sqrt(I))
        if cfg["use_bias"]:
            sd[m + "out_proj.bias"] = _uniform(g, (Hd,), 0.1)
    return _with_final_norm_and_head(g, sd, cfg, config.get("num_labels"), Hd)


def write_mamba2_dir(path, config_overrides=None, seed=0, dtype=torch.float32, shards=1, mamba_ssm=False,
                     pytorch_bin=False):
    """Mamba-2 directory: HF format (config.json with model_type "mamba2"), or with
    mamba_ssm=True mamba_ssm's (d_model, n_layer, ssm_cfg {"layer": "Mamba2"},
    backbone.embedding.weight, the tied head stored). pytorch_bin: torch.save'd
    pytorch_model.bin instead of safetensors. Returns (config written, state dict with HF names)."""
    os.makedirs(path, exist_ok=True)
    config = dict(HF_MAMBA2_SMALL)
    config.update(config_overrides or {})
    if config.get("num_labels"):
        config["tie_word_embeddings"] = False
    sd = random_mamba2_state(config, seed)
    if mamba_ssm:
        written = {
            "d_model": config["hidden_size"], "d_intermediate": 0, "n_layer": config["num_hidden_layers"],
            "vocab_size": config["vocab_size"],
            "ssm_cfg": {"layer": "Mamba2", "d_state": config["state_size"], "d_conv": config["conv_kernel"],
                        "expand": config["expand"], "headdim": config["head_dim"], "ngroups": config["n_groups"],
                        "chunk_size": config["chunk_size"]},
            "attn_layer_idx": [], "attn_cfg": {}, "rms_norm": True, "residual_in_fp32": True,
            "fused_add_norm": True, "pad_vocab_size_multiple": 1,
            "tie_embeddings": config["tie_word_embeddings"],
        }
        file_sd = {k.replace("backbone.embeddings.", "backbone.embedding."): v for k, v in sd.items()}
        if "lm_head.weight" not in file_sd:
            file_sd["lm_head.weight"] = file_sd["backbone.embedding.weight"].clone()
    else:
        written = dict(config)
        file_sd = sd
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(written, f, indent=2)
    if pytorch_bin:
        torch.save({k: v.to(dtype) for k, v in file_sd.items()}, os.path.join(path, "pytorch_model.bin"))
    else:
        _write_weights(path, file_sd, dtype, shards)
    return written, sd
