"""`tools/benchmark.py`: FLOP counter against a hand count, and a quick run."""

import json
import os
import subprocess
import sys

import keras
import pytest

from tests.conftest import REPO_ROOT
from tools import benchmark

pytestmark = pytest.mark.backend_independent


def test_vision_flops_match_hand_count():
    # 28x28 image, patch 14: 4 patches + 2 prefix tokens = 6 tokens.
    # D = 8, MLP 16, 2 layers. MACs:
    #   patch embed 4 * (3 * 14 * 14) * 8 = 18816
    #   per layer: qkv 6*8*24 = 1152, QK^T 6*6*8 = 288, AV 288,
    #              proj 6*8*8 = 384, MLP 6*8*16 + 6*16*8 = 1536 -> 3648
    macs = 18816 + 2 * 3648
    flops = benchmark.vision_encoder_flops(
        hidden_dim=8, num_layers=2, num_heads=2, mlp_dim=16, patch_size=14,
        image_size=(28, 28), batch_size=3,
    )
    assert flops == 3 * 2 * macs


def test_swiglu_and_text_flops_match_hand_count():
    # SwiGLU mlp_dim 24 -> inner int(16) rounded up to 8 = 16;
    # fc1 8 -> 32 (gate and value), fc2 16 -> 8: 6*(8*32 + 16*8) = 2304 MACs.
    per_layer = 1152 + 288 + 288 + 384 + 2304
    flops = benchmark.vision_encoder_flops(
        hidden_dim=8, num_layers=1, mlp_dim=24, ffn_layer="swiglu",
        patch_size=14, image_size=(28, 28),
    )
    assert flops == 2 * (18816 + per_layer)
    # Text: 5 tokens, D = 8, MLP 16, 3 layers.
    text_layer = 5 * 8 * 24 + 2 * 5 * 5 * 8 + 5 * 8 * 8 + 2 * 5 * 8 * 16
    assert benchmark.text_encoder_flops(
        hidden_dim=8, num_layers=3, mlp_dim=16, sequence_length=5,
        batch_size=2,
    ) == 2 * 2 * 3 * text_layer


def test_released_b14_flops():
    from keras_tips.variants import vision_config

    # B/14 at 224: 258 tokens; about 23.5 GMACs per image.
    flops = benchmark.vision_encoder_flops(
        **vision_config("B"), image_size=(224, 224)
    )
    assert 46e9 < flops < 48e9


def test_bad_ffn_layer_is_rejected():
    with pytest.raises(ValueError, match="ffn_layer"):
        benchmark.vision_encoder_flops(
            hidden_dim=8, num_layers=1, mlp_dim=16, ffn_layer="gelu"
        )


def test_quick_run_writes_json_lines(tmp_path):
    output = tmp_path / "bench.jsonl"
    backend = keras.backend.backend()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [
            sys.executable, os.path.join("tools", "benchmark.py"), "--quick",
            "--backends", backend, "--parts", "vision", "text", "training",
            "--repeats", "1", "--output", str(output),
        ],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Matmul roofline" in result.stdout
    records = [json.loads(line) for line in output.read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "run" and "error" not in kinds, records
    assert records[0]["machine"]["cores"] == os.cpu_count()
    roofs = {r["dtype"]: r for r in records if r["kind"] == "roofline"}
    assert set(roofs) == {"float32", "bfloat16"}
    assert all(r["gflops"] > 0 for r in roofs.values())
    vision = {
        (r["model"], r["dtype"]): r
        for r in records
        if r["kind"] == "vision" and "no XLA" not in r["model"]
    }
    assert set(vision) == {
        (m, d)
        for m in ("TIPS quick", "DINOv2 quick")
        for d in ("float32", "bfloat16")
    }
    tips = vision["TIPS quick", "float32"]
    expected = benchmark.vision_encoder_flops(
        **benchmark.QUICK_VISION,
        image_size=(benchmark.QUICK_IMAGE,) * 2,
        batch_size=8,
    )
    assert tips["gflop_per_batch"] == pytest.approx(expected / 1e9)
    assert tips["items_per_s"] == pytest.approx(8 / tips["seconds_per_batch"])
    assert tips["gflops"] == pytest.approx(
        expected / tips["seconds_per_batch"] / 1e9
    )
    assert tips["roofline_fraction"] == pytest.approx(
        tips["gflops"] / roofs["float32"]["gflops"]
    )
    assert tips["tips_over_dinov2"] > 0
    # Same weights in bfloat16: outputs close to float32.
    assert vision["TIPS quick", "bfloat16"]["l2_error_vs_float32"] < 5e-2
    text = [r for r in records if r["kind"] == "text"]
    assert {r["dtype"] for r in text} == {"float32", "bfloat16"}
    assert all(r["sequence_length"] == 16 for r in text)
    assert [r for r in records if r["kind"] == "training"]
