"""Pure-PyTorch reference of a Mamba-2 (SSD) language model (DESIGN.md §1b), written from
the equations, with the MambaLRP rules applied by detaching. Shares nothing with the C++
implementation: the scan is a Python loop over time with a (P x N) state per head.

    cfg = mamba2_config(config_dict)      # HF Mamba2Config keys or mamba_ssm's (ssm_cfg.layer "Mamba2")
    model = Mamba2LMReference(cfg, state_dict, dtype)      # HF tensor names
    model = Mamba2LMReference.from_dir(path, dtype)
    logits = model(input_ids, attention_mask=None, mode="standard", composite=None)
    hf_mamba_reference.explain(model, ...) works on it (same duck type as MambaLMReference).
    model.forward_embeddings(e, trace=[]) runs each scan as y = (alpha + e) x + D x, alpha
    (B, I, L, L) each channel's head's SSD matrix and e a zero leaf, appending (alpha, e) to the
    list: dF/de is the total derivative dF/dalpha (hidden attention, MambaAttr).

    ssd_scan_loop(x, dt, A, B, C, D, mambalrp)   the recurrence, one step at a time
    ssd_scan_chunked(x, dt, A, B, C, D, chunk)   the chunked SSD form (intra-chunk products,
                                                 states passed between chunks), to check the loop
    ssd_matrix(dt, A, B, C)                      M[b, h, i, j] = (C_i . B_j) exp(sum_{k=j+1..i} dt_k A_h) dt_j

Shapes: x (B, L, H, P); dt (B, L, H) after softplus; A (H); B, C (B, L, G, N); D (H).
Head h reads group h // (H // G).

Mixer: in_proj -> [z (I), xBC (I + 2GN), dt (H)]; xBC <- silu(conv1d(xBC)) (masked before and
after, as the Mamba-1 reference does); y = scan; v = y * silu(z); RMSNorm of v over each group
of I / G channels (mamba_ssm's RMSNormGated), times norm.weight; out_proj.
Rules: SiLU identity (conv output, z), SSM (exp(dt A), dt, B, C constant), gate half rule on
y * silu(z), rsqrt constant in every RMSNorm; composites on in_proj, conv1d, out_proj, head.
"""
import json
import math
import os

import torch
import torch.nn.functional as F

from hf_mamba_reference import (causal_conv1d, check_composite, gate, linear, load_state_dict, rms_norm, rules_for,
                                silu)


def mamba2_config(d):
    d = dict(d)
    if "d_model" in d and "hidden_size" not in d:  # mamba_ssm's format
        ssm = dict(d.get("ssm_cfg") or {})
        vocab = d.get("vocab_size", 50277)
        pad = d.get("pad_vocab_size_multiple", 8)
        if pad > 1 and vocab % pad:
            vocab += pad - vocab % pad
        hidden = d["d_model"]
        inner = ssm.get("expand", 2) * hidden
        cfg = {
            "hidden_size": hidden, "num_hidden_layers": d["n_layer"], "vocab_size": vocab,
            "state_size": ssm.get("d_state", 128), "conv_kernel": ssm.get("d_conv", 4),
            "expand": ssm.get("expand", 2), "head_dim": ssm.get("headdim", 64),
            "num_heads": inner // ssm.get("headdim", 64), "n_groups": ssm.get("ngroups", 1),
            "use_bias": ssm.get("bias", False), "use_conv_bias": ssm.get("conv_bias", True),
            "time_step_limit": ssm.get("dt_limit", (0.0, math.inf)),
            "layer_norm_epsilon": d.get("norm_epsilon", 1e-5),
            "tie_word_embeddings": d.get("tie_embeddings", True),
        }
    else:
        cfg = {"vocab_size": 32768, "hidden_size": 4096, "state_size": 128, "num_hidden_layers": 64,
               "layer_norm_epsilon": 1e-5, "expand": 2, "conv_kernel": 4, "n_groups": 8, "use_bias": False,
               "use_conv_bias": True, "num_heads": 128, "head_dim": 64, "time_step_limit": (0.0, math.inf),
               "tie_word_embeddings": False}
        cfg.update({k: v for k, v in d.items() if k in cfg and v is not None})
    cfg["intermediate_size"] = cfg["num_heads"] * cfg["head_dim"]
    return cfg


# ---- the scan --------------------------------------------------------------------------------

def _group_of_heads(t, H):
    """(B, L, G, N) -> (B, L, H, N): head h reads group h // (H // G)."""
    G = t.shape[2]
    return t.repeat_interleave(H // G, dim=2)


def ssd_scan_loop(x, dt, A, B, C, D=None, mambalrp=False):
    """S_t = exp(dt_t A) S_{t-1} + dt_t x_t (x) B_t ; y_t = S_t C_t + D x_t. Returns y (B, L, H, P)."""
    batch, L, H, P = x.shape
    Bh, Ch = _group_of_heads(B, H), _group_of_heads(C, H)           # (B, L, H, N)
    if mambalrp:
        dt, Bh, Ch = dt.detach(), Bh.detach(), Ch.detach()
        A = A.detach()
    S = x.new_zeros(batch, H, P, B.shape[-1])
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t] * A)                               # (B, H)
        S = decay[:, :, None, None] * S + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        y = (S * Ch[:, t, :, None, :]).sum(-1)                        # (B, H, P)
        if D is not None:
            y = y + (D.detach() if mambalrp else D)[:, None] * x[:, t]
        ys.append(y)
    return torch.stack(ys, dim=1)


def ssd_scan_chunked(x, dt, A, B, C, D=None, chunk=4):
    """The same map in the chunked SSD form: within a chunk the quadratic (attention-like)
    product with decays exp(cs_i - cs_j); between chunks the state, decayed and passed on."""
    batch, L, H, P = x.shape
    Bh, Ch = _group_of_heads(B, H), _group_of_heads(C, H)
    S = x.new_zeros(batch, H, P, B.shape[-1])
    out = []
    for c0 in range(0, L, chunk):
        c1 = min(L, c0 + chunk)
        a = dt[:, c0:c1] * A                                          # (B, Q, H) log decays
        cs = a.cumsum(1)                                              # (B, Q, H)
        seg = cs[:, :, None, :] - cs[:, None, :, :]                   # (B, i, j, H): sum_{k=j+1..i} a_k
        Q = c1 - c0
        causal = torch.ones(Q, Q, dtype=torch.bool).tril()
        decay = torch.where(causal[None, :, :, None], torch.exp(seg.masked_fill(~causal[None, :, :, None], 0)),
                            torch.zeros_like(seg))
        cb = torch.einsum("bihn,bjhn->bijh", Ch[:, c0:c1], Bh[:, c0:c1])        # (B, i, j, H)
        w = cb * decay * dt[:, None, c0:c1, :]                                 # times dt_j
        y = torch.einsum("bijh,bjhp->bihp", w, x[:, c0:c1])                    # intra-chunk
        y = y + torch.exp(cs)[..., None] * torch.einsum("bhpn,bihn->bihp", S, Ch[:, c0:c1])  # from the state
        if D is not None:
            y = y + D[:, None] * x[:, c0:c1]
        out.append(y)
        to_end = torch.exp(cs[:, -1:, :] - cs)                                 # (B, Q, H)
        S = torch.exp(cs[:, -1])[:, :, None, None] * S + torch.einsum(
            "bjh,bjhp,bjhn->bhpn", to_end * dt[:, c0:c1], x[:, c0:c1], Bh[:, c0:c1])
    return torch.cat(out, dim=1)


def ssd_matrix(dt, A, B, C):
    """The hidden attention of each head: M (B, H, L, L), zero above the diagonal."""
    batch, L, H = dt.shape
    Bh, Ch = _group_of_heads(B, H), _group_of_heads(C, H)
    M = dt.new_zeros(batch, H, L, L)
    for i in range(L):
        for j in range(i + 1):
            decay = torch.exp(dt[:, j + 1:i + 1].sum(1) * A)            # (B, H)
            M[:, :, i, j] = (Ch[:, i] * Bh[:, j]).sum(-1) * decay * dt[:, j]
    return M


# ---- the model --------------------------------------------------------------------------------

class Mamba2LMReference:
    def __init__(self, config, state_dict, dtype=torch.float64):
        self.config = cfg = mamba2_config(config)
        self.dtype = dtype
        sd = {k.replace("backbone.embedding.", "backbone.embeddings."): v.detach().to(dtype)
              for k, v in state_dict.items()}
        self.sd = sd
        emb = sd["backbone.embeddings.weight"]
        tied = cfg["tie_word_embeddings"] and (
            "lm_head.weight" not in sd or sd["lm_head.weight"].shape[0] == cfg["vocab_size"])
        self.head_w = emb if tied or "lm_head.weight" not in sd else sd["lm_head.weight"]

    @classmethod
    def from_dir(cls, path, dtype=torch.float64):
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
        binary = os.path.join(path, "pytorch_model.bin")
        sd = torch.load(binary) if os.path.exists(binary) else load_state_dict(path)
        return cls(config, sd, dtype=dtype)

    def with_zero_bias(self):
        sd = {k: (torch.zeros_like(v) if k.endswith("bias") else v) for k, v in self.sd.items()}
        return Mamba2LMReference(dict(self.config), sd, self.dtype)

    def embed(self, input_ids):
        return F.embedding(input_ids, self.sd["backbone.embeddings.weight"])

    def mixer(self, i, h, rules, composite, mask, trace=None):
        cfg, sd = self.config, self.sd
        m = f"backbone.layers.{i}.mixer."
        I, G, N, H, P = (cfg["intermediate_size"], cfg["n_groups"], cfg["state_size"], cfg["num_heads"],
                         cfg["head_dim"])
        proj = linear(h, sd[m + "in_proj.weight"], sd.get(m + "in_proj.bias"), composite.get("in_proj"))
        z, xbc, dt = torch.split(proj, [I, I + 2 * G * N, H], dim=-1)
        xbc = xbc.transpose(1, 2)                                                 # (B, C, L)
        if mask is not None:
            xbc = xbc * mask[:, None, :]
        xbc = silu(causal_conv1d(xbc, sd[m + "conv1d.weight"], sd.get(m + "conv1d.bias"), composite.get("conv1d")),
                   rules.silu)
        if mask is not None:
            xbc = xbc * mask[:, None, :]
        x, Bm, Cm = torch.split(xbc.transpose(1, 2), [I, G * N, G * N], dim=-1)  # (B, L, .)
        batch, L = x.shape[:2]
        dt = F.softplus(dt + sd[m + "dt_bias"])                                   # (B, L, H)
        lo, hi = cfg["time_step_limit"]
        if lo > 0 or hi != math.inf:
            dt = dt.clamp(lo, hi)
        A = -torch.exp(sd[m + "A_log"])
        if trace is None:
            y = ssd_scan_loop(x.reshape(batch, L, H, P), dt, A, Bm.reshape(batch, L, G, N),
                              Cm.reshape(batch, L, G, N), sd[m + "D"], mambalrp=rules.ssm).reshape(batch, L, I)
        else:
            # The scan as y = (alpha + e) x + D x with each channel's SSD matrix alpha (its
            # head's, in the graph: later layers see this one through their Delta, B, C too)
            # and a zero leaf e, so that dF/de is the total dF/dalpha per channel (MambaAttr).
            M = ssd_matrix(dt, A, Bm.reshape(batch, L, G, N), Cm.reshape(batch, L, G, N))  # (B, H, L, L)
            alpha = M.repeat_interleave(P, dim=1)                                        # (B, I, L, L)
            leaf = torch.zeros_like(alpha, requires_grad=True)
            y = torch.einsum("bdts,bsd->btd", alpha + leaf, x) + sd[m + "D"].repeat_interleave(P) * x
            trace.append((alpha.detach(), leaf))
        v = gate(y, silu(z, rules.silu), rules.gate)                              # (B, L, I)
        v = rms_norm(v.reshape(batch, L, G, I // G), 1.0, cfg["layer_norm_epsilon"], rules.norm).reshape(batch, L, I)
        v = v * sd[m + "norm.weight"]
        return linear(v, sd[m + "out_proj.weight"], sd.get(m + "out_proj.bias"), composite.get("out_proj"))

    def forward_embeddings(self, e, attention_mask=None, mode="standard", composite=None, trace=None):
        rules = rules_for(mode)
        composite = check_composite(composite)
        cfg, sd = self.config, self.sd
        mask = None if attention_mask is None else attention_mask.to(e.dtype)
        h = e
        for i in range(cfg["num_hidden_layers"]):
            hn = rms_norm(h, sd[f"backbone.layers.{i}.norm.weight"], cfg["layer_norm_epsilon"], rules.norm)
            h = h + self.mixer(i, hn, rules, composite, mask, trace)
        h = rms_norm(h, sd["backbone.norm_f.weight"], cfg["layer_norm_epsilon"], rules.norm)
        return linear(h, self.head_w, None, composite.get("head"))

    def __call__(self, input_ids, attention_mask=None, mode="standard", composite=None):
        return self.forward_embeddings(self.embed(input_ids), attention_mask, mode, composite)
