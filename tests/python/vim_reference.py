"""Pure-PyTorch reference of hustvl/Vim's VisionMamba (bimamba_type "v2"), with the
MambaLRP rules and per-layer γ/ε composites applied by detaching.

Written from facts read in hustvl/Vim (vim/models_mamba.py, mamba_ssm/modules/mamba_simple.py)
and the official MambaLRP code; independent of the C++ implementation.

Model
    model = VimReference(config_dict, state_dict, dtype=torch.float32)
    model = VimReference.from_dir(path, dtype)     # config.json + model.safetensors
                                                   # (or a Vim .pth: {"model": state_dict})
    logits = model(pixel_values, mode="standard", composite=None)          # (B, classes)

    Config keys (DESIGN.md §4; missing ones take VisionMamba's defaults): img_size,
    patch_size, stride (default: patch_size; Vim's constructor defaults to 16), in_chans
    (or channels), embed_dim, depth, d_state, d_conv, expand (also inside ssm_cfg),
    num_classes, norm_epsilon, rms_norm, residual_in_fp32, final_pool_type,
    if_abs_pos_embed, bimamba_type ("v2", or "none" for one direction), if_cls_token,
    use_middle_cls_token, if_divide_out / if_devide_out.
    Tensor names as hustvl/Vim: patch_embed.proj.{weight,bias}, cls_token, pos_embed,
    layers.{i}.mixer.{in_proj.weight, conv1d.*, conv1d_b.*, x_proj.weight, x_proj_b.weight,
    dt_proj.*, dt_proj_b.*, A_log, A_b_log, D, D_b, out_proj.weight}, layers.{i}.norm.*,
    norm_f.*, head.{weight,bias}.

Forward, as Vim: patch embedding (Conv2d, stride) -> tokens; the cls token inserted at
num_patches // 2 (use_middle_cls_token), at 0 (if_cls_token only) or not at all; pos_embed
added. Blocks: residual = residual + hidden (the first block: residual = its input),
hidden = mixer(norm(residual)). The mixer runs the forward branch on the sequence and the
backward branch (conv1d_b, x_proj_b, dt_proj_b, A_b_log, D_b) on xz flipped along the
sequence (z flipped too); out = out_proj((y_f + flip(y_b)) / 2) (sum without if_divide_out).
After the last block the residual is added once more and norm_f applied. Pooling: when there
is a cls token, Vim returns the cls token whatever final_pool_type says; otherwise "mean"
(over all tokens), "none" (the last token), "max" (head on every token, max over tokens).

Modes and composites: as hf_mamba_reference (mode names in MODES; composite roles in_proj,
x_proj, dt_proj, out_proj, conv1d (conv1d and conv1d_b), patch_embed, head; x_proj/dt_proj
apply to both directions).

Explanation
    out = explain_vim(model, pixel_values, mode, composite=None, target=None, zero_bias=False,
                      pixels=False)
    out.token_relevance (B, T): sum over the embedding dim of e * df/de, e = the sequence
        the first block sees (cls included, in sequence order); out.cls_position (int or None)
    out.pixel_relevance (B, H, W) (when pixels=True): sum over channels of x * df/dx through
        the patch embedding (its rule from composite["patch_embed"], LRP-0 by default)
    out.logit (B,) the explained logits, out.targets (B,), out.logits (B, classes)
"""
import json
import math
import os
from collections import namedtuple

import torch
import torch.nn.functional as F

import st_io
from hf_mamba_reference import (check_composite, conv2d, layer_norm, linear, rms_norm,
                                resolve_targets, rules_for, ssm_branch)

VIM_DEFAULTS = {
    "img_size": 224,
    "patch_size": 16,
    "in_chans": 3,
    "embed_dim": 192,
    "depth": 24,
    "d_state": 16,
    "d_conv": 4,
    "expand": 2,
    "dt_rank": "auto",
    "num_classes": 1000,
    "norm_epsilon": 1e-5,
    "rms_norm": True,
    "residual_in_fp32": True,
    "final_pool_type": "none",
    "if_abs_pos_embed": True,
    "bimamba_type": "v2",
    "if_cls_token": True,
    "use_middle_cls_token": True,
    "if_divide_out": True,
}


def vim_config(d):
    d = dict(d)
    cfg = dict(VIM_DEFAULTS)
    ssm = d.pop("ssm_cfg", None) or {}
    for k in ("d_conv", "expand", "dt_rank"):
        if k in ssm:
            cfg[k] = ssm[k]
    if "channels" in d and "in_chans" not in d:
        d["in_chans"] = d.pop("channels")
    if "if_devide_out" in d and "if_divide_out" not in d:
        d["if_divide_out"] = d.pop("if_devide_out")
    cfg.update({k: v for k, v in d.items() if v is not None})
    if "stride" not in d or d["stride"] is None:
        cfg["stride"] = cfg["patch_size"]
    if cfg["bimamba_type"] not in ("v2", "none"):
        raise ValueError(f"bimamba_type {cfg['bimamba_type']!r}: only v2 (and none) are supported")
    for k in ("if_rope", "if_bidirectional", "use_double_cls_token"):
        if cfg.get(k):
            raise ValueError(f"{k}: not supported by the reference")
    if cfg.get("init_layer_scale") is not None:
        raise ValueError("init_layer_scale: not supported by the reference")
    cfg["d_inner"] = int(cfg["expand"] * cfg["embed_dim"])
    if cfg["dt_rank"] == "auto":
        cfg["dt_rank"] = math.ceil(cfg["embed_dim"] / 16)
    img, p, s = cfg["img_size"], cfg["patch_size"], cfg["stride"]
    cfg["grid"] = ((img - p) // s + 1, (img - p) // s + 1)
    cfg["num_patches"] = cfg["grid"][0] * cfg["grid"][1]
    return cfg


def load_vim_state_dict(path):
    st = os.path.join(path, "model.safetensors")
    if os.path.exists(st):
        return st_io.load_file(st)
    for name in sorted(os.listdir(path)):
        if name.endswith(".pth") or name.endswith(".pt"):
            obj = torch.load(os.path.join(path, name), map_location="cpu")
            return obj["model"] if isinstance(obj, dict) and "model" in obj else obj
    raise FileNotFoundError(f"{path}: no model.safetensors or .pth checkpoint")


VimExplanation = namedtuple(
    "VimExplanation", "token_relevance pixel_relevance logit targets logits cls_position")


class VimReference:
    def __init__(self, config, state_dict, dtype=torch.float32):
        self.config = cfg = vim_config(config)
        self.dtype = dtype
        self.sd = sd = {k: v.detach().to(dtype) for k, v in state_dict.items()
                        if torch.is_floating_point(v)}
        D, Di, N, K, R = cfg["embed_dim"], cfg["d_inner"], cfg["d_state"], cfg["d_conv"], cfg["dt_rank"]
        C, P = cfg["in_chans"], cfg["patch_size"]
        self.n_tokens = cfg["num_patches"] + (1 if cfg["if_cls_token"] else 0)
        expect = {"patch_embed.proj.weight": (D, C, P, P), "norm_f.weight": (D,)}
        if cfg["if_cls_token"]:
            expect["cls_token"] = (1, 1, D)
        if cfg["if_abs_pos_embed"]:
            expect["pos_embed"] = (1, self.n_tokens, D)
        if cfg["num_classes"] > 0:
            expect["head.weight"] = (cfg["num_classes"], D)
        dirs = ["", "_b"] if cfg["bimamba_type"] == "v2" else [""]
        for i in range(cfg["depth"]):
            m = f"layers.{i}.mixer."
            expect.update({f"layers.{i}.norm.weight": (D,), m + "in_proj.weight": (2 * Di, D),
                           m + "out_proj.weight": (D, Di)})
            for s in dirs:
                expect.update({m + f"conv1d{s}.weight": (Di, 1, K), m + f"x_proj{s}.weight": (R + 2 * N, Di),
                               m + f"dt_proj{s}.weight": (Di, R), m + f"dt_proj{s}.bias": (Di,),
                               m + ("A_b_log" if s else "A_log"): (Di, N), m + f"D{s}": (Di,)})
        for k, shape in expect.items():
            if k not in sd:
                raise KeyError(f"missing tensor {k}")
            if tuple(sd[k].shape) != shape:
                raise ValueError(f"tensor {k}: shape {tuple(sd[k].shape)}, expected {shape}")

    @classmethod
    def from_dir(cls, path, dtype=torch.float32):
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        return cls(config, load_vim_state_dict(path), dtype=dtype)

    def with_zero_bias(self):
        sd = {k: (torch.zeros_like(v) if k.endswith("bias") else v) for k, v in self.sd.items()}
        cfg = {k: v for k, v in self.config.items() if k not in ("d_inner", "grid", "num_patches")}
        return VimReference(cfg, sd, self.dtype)

    @property
    def cls_position(self):
        cfg = self.config
        if not cfg["if_cls_token"]:
            return None
        return cfg["num_patches"] // 2 if cfg["use_middle_cls_token"] else 0

    # ---- pieces ----
    def patch_embed(self, x, composite):
        sd = self.sd
        p = conv2d(x, sd["patch_embed.proj.weight"], sd.get("patch_embed.proj.bias"),
                   stride=self.config["stride"], spec=composite.get("patch_embed"))
        return p.flatten(2).transpose(1, 2)                    # (B, patches, D)

    def tokens(self, patches):
        """Insert the cls token and add pos_embed: the sequence the first block sees."""
        sd, cfg = self.sd, self.config
        B = patches.shape[0]
        x = patches
        pos = self.cls_position
        if pos is not None:
            cls = sd["cls_token"].expand(B, -1, -1)
            x = torch.cat((x[:, :pos], cls, x[:, pos:]), dim=1)
        if cfg["if_abs_pos_embed"]:
            x = x + sd["pos_embed"]
        return x

    def norm(self, prefix, x, rules):
        cfg, sd = self.config, self.sd
        if cfg["rms_norm"]:
            return rms_norm(x, sd[prefix + ".weight"], cfg["norm_epsilon"], rules.norm,
                            bias=sd.get(prefix + ".bias"))
        return layer_norm(x, sd.get(prefix + ".weight"), sd.get(prefix + ".bias"),
                          cfg["norm_epsilon"], rules.norm)

    def mixer(self, i, h, rules, composite):
        cfg, sd = self.config, self.sd
        m = f"layers.{i}.mixer."
        xz = linear(h, sd[m + "in_proj.weight"], sd.get(m + "in_proj.bias"),
                    composite.get("in_proj")).transpose(1, 2)          # (B, 2 Di, L)

        def branch(xz_, s, a_name):
            x, z = xz_.chunk(2, dim=1)
            p = {"conv_w": sd[m + f"conv1d{s}.weight"], "conv_b": sd.get(m + f"conv1d{s}.bias"),
                 "x_proj_w": sd[m + f"x_proj{s}.weight"], "x_proj_b": sd.get(m + f"x_proj{s}.bias"),
                 "dt_proj_w": sd[m + f"dt_proj{s}.weight"], "dt_proj_b": sd[m + f"dt_proj{s}.bias"],
                 "A_log": sd[m + a_name], "D": sd[m + f"D{s}"]}
            return ssm_branch(x, z, p, rules, composite, cfg["dt_rank"], cfg["d_state"])

        y = branch(xz, "", "A_log")
        if cfg["bimamba_type"] == "v2":
            y_b = branch(xz.flip([-1]), "_b", "A_b_log")
            y = y + y_b.flip([-1])
            if cfg["if_divide_out"]:
                y = y / 2
        return linear(y.transpose(1, 2), sd[m + "out_proj.weight"], sd.get(m + "out_proj.bias"),
                      composite.get("out_proj"))

    def forward_tokens(self, e, mode="standard", composite=None):
        """Logits (B, classes) from the token sequence e (B, T, D)."""
        rules = rules_for(mode)
        composite = check_composite(composite)
        cfg, sd = self.config, self.sd
        residual, h = None, e
        for i in range(cfg["depth"]):
            residual = h if residual is None else residual + h
            h = self.mixer(i, self.norm(f"layers.{i}.norm", residual, rules), rules, composite)
        residual = h if residual is None else residual + h
        h = self.norm("norm_f", residual, rules)
        pos = self.cls_position
        if pos is not None:
            feat = h[:, pos]
        elif cfg["final_pool_type"] == "mean":
            feat = h.mean(dim=1)
        elif cfg["final_pool_type"] == "none":
            feat = h[:, -1]
        elif cfg["final_pool_type"] in ("max", "all"):
            feat = h
        else:
            raise ValueError(f"final_pool_type {cfg['final_pool_type']!r}")
        if cfg["num_classes"] > 0:
            out = linear(feat, sd["head.weight"], sd.get("head.bias"), composite.get("head"))
        else:
            out = feat
        if cfg["final_pool_type"] == "max" and pos is None:
            out = out.max(dim=1)[0]
        return out

    def __call__(self, pixel_values, mode="standard", composite=None):
        composite_c = check_composite(composite)
        e = self.tokens(self.patch_embed(pixel_values.to(self.dtype), composite_c))
        return self.forward_tokens(e, mode, composite)


def explain_vim(model, pixel_values, mode, composite=None, target=None, zero_bias=False,
                pixels=False):
    """Token relevance (and pixel relevance with pixels=True) for one class logit per row."""
    if zero_bias:
        model = model.with_zero_bias()
    comp = check_composite(composite)
    x = torch.as_tensor(pixel_values).to(model.dtype)
    if x.dim() == 3:
        x = x[None]
    with torch.enable_grad():
        if pixels:
            x = x.detach().requires_grad_(True)
            e = model.tokens(model.patch_embed(x, comp))
            e.retain_grad()
        else:
            e = model.tokens(model.patch_embed(x, comp)).detach().requires_grad_(True)
        logits = model.forward_tokens(e, mode, composite)
        targets = resolve_targets(logits.detach(), target)
        f = logits.gather(1, targets[:, None])[:, 0]
        f.sum().backward()
    token_rel = (e.detach() * e.grad).sum(-1)
    pixel_rel = (x.detach() * x.grad).sum(1) if pixels else None
    return VimExplanation(token_rel, pixel_rel, f.detach(), targets, logits.detach(),
                          model.cls_position)
