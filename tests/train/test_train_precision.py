"""The trainer's precision and compilation paths, proven on CPU (bf16 autocast when asked, a
torch.compile'd model), and the CUDA path (bf16 autocast, fused AdamW), collected everywhere and
skipped with its reason where there is no GPU."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from babelflow.config import ModelConfig
from babelflow.models import build_model
from babelflow.train import train_model

torch.set_num_threads(1)

TINY_MODEL = ModelConfig.model_validate({
    "arch": "transformer",
    "transformer": {"d_model": 16, "ffn_dim": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1,
                    "max_positions": 64, "dropout": 0.0},
})


@pytest.fixture
def train(clean_dir, tokenizer):
    """train(params, root) -> (metrics, weights, logits dtypes seen): the trainer on a tiny Transformer."""

    def go(params, root):
        dtypes: set[torch.dtype] = set()

        def build(_params, vocab_size):
            model = build_model(TINY_MODEL, vocab_size)
            model.register_forward_hook(lambda _m, _i, logits: dtypes.add(logits.dtype))
            return model

        metrics = train_model(params, clean_dir, tokenizer, root / "out", root / "ckpt", root / "plots",
                              log=lambda _line: None, build=build)
        return metrics, load_file(str(root / "out" / "model.safetensors")), dtypes

    return go


def test_cpu_stays_fp32_unless_bf16_is_asked_for(train, make_params, tmp_path):
    # bf16: true (the default) is for CUDA; a CPU run keeps fp32 and its bit-for-bit results.
    _, fp32, dtypes = train(make_params(max_steps=4, validate_every=2, bf16=True), tmp_path / "fp32")
    assert dtypes == {torch.float32}
    asked = make_params(max_steps=4, validate_every=2, bf16_cpu=True)
    metrics, bf16, dtypes = train(asked, tmp_path / "bf16")
    assert dtypes == {torch.bfloat16}  # training steps and dev loss ran under autocast
    assert all(t.dtype == torch.float32 for t in bf16.values())  # the weights stay fp32
    assert torch.isfinite(torch.tensor([metrics["train_loss"], metrics["dev_loss"]])).all()
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32)
    # Still reproducible on one machine.
    _, again, _ = train(asked, tmp_path / "again")
    assert all(torch.equal(bf16[k], again[k]) for k in bf16)


@pytest.mark.slow  # compiling forward and backward for two shapes: ~30-60 s on 2 loaded cores
def test_compiled_model_trains_on_cpu(train, make_params, tmp_path, monkeypatch):
    import torch._dynamo
    import torch._inductor.config
    from torch._dynamo.utils import counters

    monkeypatch.setattr(torch._inductor.config, "compile_threads", 1)
    torch._dynamo.reset()
    counters.clear()
    try:
        metrics, compiled, _ = train(make_params(max_steps=3, validate_every=3, compile=True), tmp_path / "c")
        assert counters["stats"]["unique_graphs"] > 0, dict(counters["stats"])  # it really was compiled
        # Whole graphs: the recompile for a second batch shape (dynamic sizes) must not break the graph
        # at every layer, which would cost fusion on a GPU.
        assert not counters["graph_break"], dict(counters["graph_break"])
    finally:
        torch._dynamo.reset()
    eager_metrics, eager, _ = train(make_params(max_steps=3, validate_every=3), tmp_path / "e")
    for key in ("train_loss", "dev_loss"):
        assert metrics[key] == pytest.approx(eager_metrics[key], abs=1e-3), key
    # The checkpointed and saved weights are the model's own (no `_orig_mod.` prefix), close to eager's
    # (Adam turns the float noise of a zero gradient, e.g. a key bias's, into steps of up to lr).
    assert compiled.keys() == eager.keys()
    for name in eager:
        torch.testing.assert_close(compiled[name], eager[name], rtol=0, atol=1e-2, msg=name)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 autocast and fused AdamW)")
def test_cuda_step_uses_bf16_autocast_and_fused_adamw(train, make_params, tmp_path, monkeypatch):
    fused: list[bool] = []

    class Recording(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            fused.append(bool(self.defaults.get("fused")))

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    metrics, weights, dtypes = train(make_params(max_steps=3, validate_every=3, device="cuda", bf16=True),
                                     tmp_path)
    assert metrics["device"].startswith("cuda") and fused == [True]
    assert dtypes == {torch.bfloat16}
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in weights.values())
