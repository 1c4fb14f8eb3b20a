"""explain(): relevance of a model's inputs, computed by the C++ explainer (the op
mamba_lrp::explain, csrc/app/explain/explain_op.cpp), not by a Python copy of it."""
import torch

from ._library import ops


def explain(model_dir, input_ids, method="mambalrp", target=None, position=-1, attention_mask=None,
            zero_bias=False, dtype=torch.float32, return_logits=False):
    """Relevance of each input token for the logit of `target` at `position`.

    model_dir: a model directory (DESIGN.md §4): Mamba LM / classifier or Vision Mamba.
    input_ids: token ids (B, L) or (L) for a Mamba model; pixel values (B, C, H, W) or
      (C, H, W) for a Vision Mamba.
    method: "mambalrp" (default), "gi", "lrp-ln", "mambalrp-no-silu", "mambalrp-no-ssm",
      "mambalrp-no-gate", and for Mamba models "smoothgrad", "ig", "attnroll", "mambaattr",
      "random" (DESIGN.md §5).
    target: None (the argmax per row), an int for every row, or one per row.
    position: the explained position (Mamba models; negative counts from the end).
    dtype: torch.float32 or torch.float64, the dtype the model runs in.

    Returns the relevance (B, L) (Vim: (B, T), one value per token the first block sees,
    cls included), on the CPU; with return_logits, (relevance, logits (B), targets (B)).
    """
    if target is None:
        targets = []
    elif isinstance(target, int):
        targets = [target]
    else:
        targets = [int(t) for t in (target.tolist() if torch.is_tensor(target) else target)]
    dtypes = {torch.float32: "float32", torch.float64: "float64"}
    if dtype not in dtypes:
        raise ValueError(f"explain: dtype must be torch.float32 or torch.float64, got {dtype}")
    relevance, logits, targets_used = ops().explain(str(model_dir), input_ids, method, targets, int(position),
                                                    attention_mask, bool(zero_bias), dtypes[dtype])
    return (relevance, logits, targets_used) if return_logits else relevance
