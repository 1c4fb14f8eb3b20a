"""Pure-PyTorch reference of Hugging Face's MambaForCausalLM (the sequential "slow path"
of transformers' modeling_mamba), with the MambaLRP rules applied by detaching.

Written from the equations and from facts read in transformers' modeling_mamba.py and
configuration_mamba.py and in the official MambaLRP code (FarnoushRJ/MambaLRP); it shares
nothing with the C++ implementation, so the Python tests can use it as the independent
reference. Deliberately simple: a Python loop over time (scan_reference.selective_scan_ref).

Model
    cfg = mamba_config(config_dict)          # HF keys, HF defaults for missing keys
    model = MambaLMReference(cfg, state_dict, dtype=torch.float32)   # HF tensor names
    model = MambaLMReference.from_dir(path, dtype=torch.float64)    # config.json + model.safetensors
    logits = model(input_ids, attention_mask=None, mode="standard", composite=None)  # (B, L, V)

    Tensor names (DESIGN.md §4): backbone.embeddings.weight, backbone.layers.{i}.norm.weight,
    backbone.layers.{i}.mixer.{A_log, D, conv1d.weight, conv1d.bias, in_proj.weight,
    in_proj.bias, x_proj.weight, dt_proj.weight, dt_proj.bias, out_proj.weight, out_proj.bias},
    backbone.norm_f.weight, lm_head.weight (tied to the embeddings when missing or when
    tie_word_embeddings). The state-spaces format (backbone.embedding.weight, d_model, n_layer,
    ssm_cfg) is converted by `from_dir` / `state_spaces_to_hf`.

Modes (propagation; forward values are the same in every mode), see DESIGN.md §1:
    "standard" (alias "gi"): true gradient, no rule.
    "mambalrp": SiLU identity rule (conv SiLU and gate SiLU), SSM rule (exp(dt A), dt B, C
        constant), gate half rule, norm rule (rsqrt constant).
    "mambalrp-no-silu", "mambalrp-no-ssm", "mambalrp-no-gate": "mambalrp" less that one rule.
    "lrp-ln": only the norm rule.

Composite (optional): {role: spec} with role in in_proj, x_proj, dt_proj, out_proj, conv1d,
head (the lm_head) and spec {"rule": "gamma", "gamma": g} | {"rule": "epsilon",
"epsilon": e} | {"rule": "zero"} (LRP-0, also None or a missing role). Applied by the detach
trick out = z' * (z / z').detach(); the γ-rule is the generalized (mixed-sign) one of the
official code, with the positive branch where z > 0 (the official code uses z > 1e-6).

Explanation
    relevance, f, targets = explain(model, input_ids, mode, target=None, position=-1,
                                    zero_bias=False, attention_mask=None, composite=None)
    relevance (B, L) = sum over the hidden dim of e * df/de at the embedding output;
    f (B,) = logit of the target at `position`; targets (B,) (argmax of that row's logits
    when target is None; an int applies to every row; a (B,) tensor gives one per row).

Dtype: every computation runs in the model's dtype (float32 or float64). HF casts the norm
and the residual to float32; for a float32 model that is the same, for float64 we keep
float64 throughout (so residual_in_fp32 is a no-op here).
"""
import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from scan_reference import selective_scan_ref
import st_io


# --------------------------------------------------------------------------------------
# Rules


@dataclass(frozen=True)
class Rules:
    silu: bool = False   # SiLU identity rule (silu(x)/x constant)
    ssm: bool = False    # exp(dt A), dt B, C constant
    gate: bool = False   # y * silu(z): half of the gradient to each factor
    norm: bool = False   # rsqrt(mean(x^2) + eps) constant (LayerNorm: 1/std constant)
    # 0: the SiLU rule's ratio is sigmoid(x) exactly. The official code divides by a
    # stabilized x instead, silu(x) / (x + 1e-6 * sign(x)) (sign(0) = 1): silu_eps=1e-6
    # reproduces its numbers (used by the golden tests to check the rest bit-closely).
    silu_eps: float = 0.0


MODES = {
    "standard": Rules(),
    "gi": Rules(),
    "mambalrp": Rules(silu=True, ssm=True, gate=True, norm=True),
    "mambalrp-no-silu": Rules(silu=False, ssm=True, gate=True, norm=True),
    "mambalrp-no-ssm": Rules(silu=True, ssm=False, gate=True, norm=True),
    "mambalrp-no-gate": Rules(silu=True, ssm=True, gate=False, norm=True),
    "lrp-ln": Rules(norm=True),
}

ROLES = ("in_proj", "x_proj", "dt_proj", "out_proj", "conv1d", "patch_embed", "head")


def rules_for(mode):
    if isinstance(mode, Rules):
        return mode
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {sorted(MODES)}")
    return MODES[mode]


def check_composite(composite):
    """Validate a composite {role: spec}; returns a dict (empty for None)."""
    if composite is None:
        return {}
    out = {}
    for role, spec in composite.items():
        if role not in ROLES:
            raise ValueError(f"composite: unknown layer role {role!r}; expected one of {ROLES}")
        if spec is None:
            out[role] = None
            continue
        if isinstance(spec, str):
            spec = {"rule": spec}
        kind = spec.get("rule", "zero")
        if kind in ("zero", "lrp-0", "lrp0", "lrp_0", "none"):
            out[role] = None
        elif kind == "gamma":
            out[role] = {"rule": "gamma", "gamma": float(spec.get("gamma", 0.25))}
        elif kind == "epsilon":
            out[role] = {"rule": "epsilon", "epsilon": float(spec.get("epsilon", 1e-6))}
        else:
            raise ValueError(f"composite: role {role!r}: unknown rule {kind!r}")
    return out


def silu(x, identity_rule, eps=0.0):
    """silu(x); with the identity rule the backward is g * sigmoid(x) (ratio silu(x)/x constant)."""
    if identity_rule:
        if eps:
            xs = x + eps * _sign0(x)
            return xs * (F.silu(x) / xs).detach()
        return x * torch.sigmoid(x).detach()
    return F.silu(x)


def gate(y, g, half_rule):
    """y * g; with the half rule each factor receives half of the gradient."""
    out = y * g
    if half_rule:
        out = 0.5 * out + (0.5 * out).detach()
    return out


def rms_norm(x, weight, eps, rule, bias=None):
    r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    if rule:
        r = r.detach()
    out = x * r * weight
    return out if bias is None else out + bias


def layer_norm(x, weight, bias, eps, rule):
    xc = x - x.mean(-1, keepdim=True)
    r = torch.rsqrt(xc.pow(2).mean(-1, keepdim=True) + eps)
    if rule:
        r = r.detach()
    out = xc * r
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _sign0(z):
    # sign with sign(0) = +1 (as Zennit's and the official stabilizer)
    return torch.where(z >= 0, torch.ones_like(z), -torch.ones_like(z))


def apply_rule(f, x, weight, bias, spec):
    """z = f(x, weight, bias) in the forward; the backward of the rule `spec` (None = LRP-0).

    f must be linear in (x, bias) jointly, e.g. F.linear or a convolution."""
    z = f(x, weight, bias)
    if spec is None:
        return z
    if spec["rule"] == "epsilon":
        zp = z + (spec["epsilon"] * _sign0(z)).detach()
        return zp * (z / zp).detach()
    if spec["rule"] == "gamma":
        g = spec["gamma"]
        w_pos = weight + g * weight.clamp(min=0)
        w_neg = weight + g * weight.clamp(max=0)
        b_pos = None if bias is None else bias + g * bias.clamp(min=0)
        b_neg = None if bias is None else bias + g * bias.clamp(max=0)
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        z_pos = f(xp, w_pos, b_pos) + f(xn, w_neg, None)   # >= z: where z > 0
        z_neg = f(xp, w_neg, b_neg) + f(xn, w_pos, None)   # <= z: where z <= 0
        zp = torch.where(z > 0, z_pos, z_neg)
        # zp is 0 only where z is 0; the relevance there is 0
        ratio = z / torch.where(zp == 0, torch.ones_like(zp), zp)
        return zp * ratio.detach()
    raise ValueError(f"unknown rule {spec!r}")


def linear(x, weight, bias=None, spec=None):
    return apply_rule(F.linear, x, weight, bias, spec)


def causal_conv1d(x, weight, bias=None, spec=None):
    """Depthwise causal conv over (B, C, L): padding kernel-1 both sides, truncated to L."""
    L = x.shape[-1]
    k = weight.shape[-1]
    channels = weight.shape[0]

    def f(inp, w, b):
        return F.conv1d(inp, w, b, padding=k - 1, groups=channels)[..., :L]

    return apply_rule(f, x, weight, bias, spec)


def conv2d(x, weight, bias=None, stride=1, spec=None):
    def f(inp, w, b):
        return F.conv2d(inp, w, b, stride=stride)

    return apply_rule(f, x, weight, bias, spec)


# --------------------------------------------------------------------------------------
# The mixer branch shared by the LM and Vim


def ssm_branch(x, z, p, rules, composite, time_step_rank, state_size, mask=None):
    """One Mamba mixer branch after in_proj, before out_proj.

    x, z: (B, d_inner, L). p: dict with conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b,
    A_log, D. mask: (B, L) 0/1 or None (Hugging Face: x zeroed before and after the conv).
    Returns the gated output (B, d_inner, L)."""
    if mask is not None:
        x = x * mask[:, None, :]
    x = causal_conv1d(x, p["conv_w"], p.get("conv_b"), composite.get("conv1d"))
    x = silu(x, rules.silu, rules.silu_eps)
    if mask is not None:
        x = x * mask[:, None, :]
    params = linear(x.transpose(1, 2), p["x_proj_w"], p.get("x_proj_b"), composite.get("x_proj"))
    dt, Bm, Cm = torch.split(params, [time_step_rank, state_size, state_size], dim=-1)
    dt = linear(dt, p["dt_proj_w"], p.get("dt_proj_b"), composite.get("dt_proj"))
    dt = F.softplus(dt)                                          # (B, L, d_inner)
    A = -torch.exp(p["A_log"])
    y = selective_scan_ref(x, dt.transpose(1, 2), A, Bm.transpose(1, 2), Cm.transpose(1, 2),
                           D=p["D"], z=None, mambalrp=rules.ssm)
    return gate(y, silu(z, rules.silu, rules.silu_eps), rules.gate)


# --------------------------------------------------------------------------------------
# Config and weights

HF_DEFAULTS = {
    "vocab_size": 50280,
    "hidden_size": 768,
    "state_size": 16,
    "num_hidden_layers": 32,
    "layer_norm_epsilon": 1e-5,
    "expand": 2,
    "conv_kernel": 4,
    "use_bias": False,         # transformers' MambaConfig default
    "use_conv_bias": True,
    "hidden_act": "silu",
    "residual_in_fp32": True,
    "time_step_rank": "auto",
    "tie_word_embeddings": True,
}


def mamba_config(d):
    """HF config dict -> dict with every key resolved (HF defaults; "auto" rank)."""
    d = dict(d)
    if "d_model" in d and "hidden_size" not in d:
        d = state_spaces_config_to_hf(d)
    cfg = dict(HF_DEFAULTS)
    cfg.update({k: v for k, v in d.items() if v is not None})
    if "intermediate_size" not in d or d["intermediate_size"] is None:
        cfg["intermediate_size"] = int(cfg["expand"] * cfg["hidden_size"])
    if cfg["time_step_rank"] == "auto":
        cfg["time_step_rank"] = math.ceil(cfg["hidden_size"] / 16)
    cfg["time_step_rank"] = int(cfg["time_step_rank"])
    if cfg["hidden_act"] != "silu":
        raise ValueError(f"hidden_act {cfg['hidden_act']!r}: only silu is supported")
    return cfg


def state_spaces_config_to_hf(d):
    ssm = dict(d.get("ssm_cfg") or {})
    out = {
        "hidden_size": d["d_model"],
        "num_hidden_layers": d["n_layer"],
        "vocab_size": d.get("vocab_size", 50277),
        "state_size": ssm.get("d_state", 16),
        "conv_kernel": ssm.get("d_conv", 4),
        "expand": ssm.get("expand", 2),
        "time_step_rank": ssm.get("dt_rank", "auto"),
        "use_bias": ssm.get("bias", False),
        "use_conv_bias": ssm.get("conv_bias", True),
        "residual_in_fp32": d.get("residual_in_fp32", True),
        "tie_word_embeddings": d.get("tie_embeddings", True),
        "layer_norm_epsilon": d.get("norm_epsilon", 1e-5),
        "pad_vocab_size_multiple": d.get("pad_vocab_size_multiple", 8),
    }
    if not d.get("rms_norm", True):
        raise ValueError("state-spaces config with rms_norm false is not supported")
    return out


def state_spaces_to_hf(state_dict):
    return {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in state_dict.items()}


def load_state_dict(path):
    """model.safetensors, or shards listed in model.safetensors.index.json, in a directory."""
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        out = {}
        for shard in sorted(set(weight_map.values())):
            out.update(st_io.load_file(os.path.join(path, shard)))
        return out
    return st_io.load_file(os.path.join(path, "model.safetensors"))


class MambaLMReference:
    """Hugging Face MambaForCausalLM (slow path), weights held as plain tensors."""

    def __init__(self, config, state_dict, dtype=torch.float32):
        self.config = cfg = mamba_config(config)
        self.dtype = dtype
        sd = {k: v.detach().to(dtype) for k, v in state_to_hf_names(state_dict).items()}
        self.sd = sd
        H, Di, N, K, R = (cfg["hidden_size"], cfg["intermediate_size"], cfg["state_size"],
                          cfg["conv_kernel"], cfg["time_step_rank"])
        self.n_layers = cfg["num_hidden_layers"]
        expect = {
            "backbone.norm_f.weight": (H,),
        }
        for i in range(self.n_layers):
            m = f"backbone.layers.{i}.mixer."
            expect.update({
                f"backbone.layers.{i}.norm.weight": (H,),
                m + "A_log": (Di, N), m + "D": (Di,),
                m + "conv1d.weight": (Di, 1, K),
                m + "in_proj.weight": (2 * Di, H), m + "x_proj.weight": (R + 2 * N, Di),
                m + "dt_proj.weight": (Di, R), m + "dt_proj.bias": (Di,),
                m + "out_proj.weight": (H, Di),
            })
            if cfg["use_conv_bias"]:
                expect[m + "conv1d.bias"] = (Di,)
            if cfg["use_bias"]:
                expect[m + "in_proj.bias"] = (2 * Di,)
                expect[m + "out_proj.bias"] = (H,)
        for k, shape in expect.items():
            if k not in sd:
                raise KeyError(f"missing tensor {k}")
            if tuple(sd[k].shape) != shape:
                raise ValueError(f"tensor {k}: shape {tuple(sd[k].shape)}, expected {shape}")
        emb = sd["backbone.embeddings.weight"]
        if emb.dim() != 2 or emb.shape[1] != H or emb.shape[0] < cfg["vocab_size"]:
            raise ValueError(f"backbone.embeddings.weight: shape {tuple(emb.shape)}, expected "
                             f"({cfg['vocab_size']}, {H})")
        if cfg["tie_word_embeddings"] or "lm_head.weight" not in sd:
            self.head_w = emb
        else:
            self.head_w = sd["lm_head.weight"]
        self.head_b = sd.get("lm_head.bias")

    @classmethod
    def from_dir(cls, path, dtype=torch.float32):
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        return cls(config, load_state_dict(path), dtype=dtype)

    def with_zero_bias(self):
        """A copy whose every bias tensor (names ending in "bias") is zero."""
        sd = {k: (torch.zeros_like(v) if k.endswith("bias") else v) for k, v in self.sd.items()}
        return MambaLMReference(self.config, sd, self.dtype)

    def embed(self, input_ids):
        return F.embedding(input_ids, self.sd["backbone.embeddings.weight"])

    def mixer(self, i, h, rules, composite, mask):
        cfg, sd = self.config, self.sd
        m = f"backbone.layers.{i}.mixer."
        xz = linear(h, sd[m + "in_proj.weight"], sd.get(m + "in_proj.bias"),
                    composite.get("in_proj")).transpose(1, 2)
        x, z = xz.chunk(2, dim=1)
        p = {
            "conv_w": sd[m + "conv1d.weight"], "conv_b": sd.get(m + "conv1d.bias"),
            "x_proj_w": sd[m + "x_proj.weight"], "dt_proj_w": sd[m + "dt_proj.weight"],
            "dt_proj_b": sd[m + "dt_proj.bias"], "A_log": sd[m + "A_log"], "D": sd[m + "D"],
        }
        y = ssm_branch(x, z, p, rules, composite, cfg["time_step_rank"], cfg["state_size"], mask)
        return linear(y.transpose(1, 2), sd[m + "out_proj.weight"], sd.get(m + "out_proj.bias"),
                      composite.get("out_proj"))

    def forward_embeddings(self, e, attention_mask=None, mode="standard", composite=None):
        """Logits (B, L, V) from the embedding output e (B, L, H)."""
        rules = rules_for(mode)
        composite = check_composite(composite)
        cfg, sd = self.config, self.sd
        mask = None if attention_mask is None else attention_mask.to(e.dtype)
        h = e
        for i in range(self.n_layers):
            residual = h
            hn = rms_norm(h, sd[f"backbone.layers.{i}.norm.weight"], cfg["layer_norm_epsilon"], rules.norm)
            h = residual + self.mixer(i, hn, rules, composite, mask)
        h = rms_norm(h, sd["backbone.norm_f.weight"], cfg["layer_norm_epsilon"], rules.norm)
        return linear(h, self.head_w, self.head_b, composite.get("head"))

    def __call__(self, input_ids, attention_mask=None, mode="standard", composite=None):
        return self.forward_embeddings(self.embed(input_ids), attention_mask, mode, composite)


def state_to_hf_names(sd):
    if "backbone.embedding.weight" in sd and "backbone.embeddings.weight" not in sd:
        return state_spaces_to_hf(sd)
    return dict(sd)


def resolve_targets(logits_at, target):
    """logits_at (B, C); target None | int | sequence/tensor of B ints -> (B,) int64."""
    B = logits_at.shape[0]
    if target is None:
        return logits_at.argmax(-1)
    if isinstance(target, int):
        return torch.full((B,), target, dtype=torch.long)
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(B)
    if t.numel() != B:
        raise ValueError(f"target: {t.numel()} values for {B} rows")
    return t.clone()


def explain(model, input_ids, mode, target=None, position=-1, zero_bias=False,
            attention_mask=None, composite=None):
    """MambaLRP (or another mode) relevance of each token for one logit per row.

    Returns (relevance (B, L), f (B,) the explained logits, targets (B,))."""
    if zero_bias:
        model = model.with_zero_bias()
    input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    with torch.enable_grad():
        e = model.embed(input_ids).detach().requires_grad_(True)
        logits = model.forward_embeddings(e, attention_mask, mode, composite)
        at = logits[:, position, :]
        targets = resolve_targets(at.detach(), target)
        f = at.gather(1, targets[:, None])[:, 0]
        (grad,) = torch.autograd.grad(f.sum(), e)
    relevance = (e.detach() * grad).sum(-1)
    if attention_mask is not None:
        relevance = relevance * attention_mask.to(relevance.dtype)
    return relevance, f.detach(), targets
