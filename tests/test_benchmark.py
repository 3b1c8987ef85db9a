"""`tools/benchmarking/flops.py` against hand counts and XLA; `tools/benchmark.py`
quick run and pieces of its `tools/benchmarking/` folder."""

import json
import os
import subprocess
import sys

import keras
import pytest

from tests.conftest import REPO_ROOT
from tools.benchmarking import flops
from tools.benchmarking import settings
from tools.benchmarking.official import load_official_module
from tools.benchmarking.timing import round_ratio

pytestmark = pytest.mark.backend_independent


def test_vision_flops_match_hand_count():
    # 28x28 image, patch 14: 4 patches + 2 prefix tokens = 6 tokens.
    # D = 8, MLP 16, 2 layers. MACs:
    #   patch embed 4 * (3 * 14 * 14) * 8 = 18816
    #   per layer: qkv 6*8*24 = 1152, QK^T 6*6*8 = 288, AV 288,
    #              proj 6*8*8 = 384, MLP 6*8*16 + 6*16*8 = 1536 -> 3648
    macs = 18816 + 2 * 3648
    count = flops.vision_encoder_flops(
        hidden_dim=8, num_layers=2, num_heads=2, mlp_dim=16, patch_size=14,
        image_size=(28, 28), batch_size=3,
    )
    assert count == 3 * 2 * macs


def test_swiglu_and_text_flops_match_hand_count():
    # SwiGLU mlp_dim 24 -> inner int(16) rounded up to 8 = 16;
    # fc1 8 -> 32 (gate and value), fc2 16 -> 8: 6*(8*32 + 16*8) = 2304 MACs.
    per_layer = 1152 + 288 + 288 + 384 + 2304
    count = flops.vision_encoder_flops(
        hidden_dim=8, num_layers=1, mlp_dim=24, ffn_layer="swiglu",
        patch_size=14, image_size=(28, 28),
    )
    assert count == 2 * (18816 + per_layer)
    # Text: 5 tokens, D = 8, MLP 16, 3 layers.
    text_layer = 5 * 8 * 24 + 2 * 5 * 5 * 8 + 5 * 8 * 8 + 2 * 5 * 8 * 16
    assert flops.text_encoder_flops(
        hidden_dim=8, num_layers=3, mlp_dim=16, sequence_length=5,
        batch_size=2,
    ) == 2 * 2 * 3 * text_layer


def test_released_b14_flops():
    from keras_tips.variants import vision_config

    # B/14 at 224: 258 tokens; about 23.5 GMACs per image.
    count = flops.vision_encoder_flops(
        **vision_config("B"), image_size=(224, 224)
    )
    assert 46e9 < count < 48e9


def test_bad_ffn_layer_is_rejected():
    with pytest.raises(ValueError, match="ffn_layer"):
        flops.vision_encoder_flops(
            hidden_dim=8, num_layers=1, mlp_dim=16, ffn_layer="gelu"
        )


def test_projection_head_flops_match_hand_count():
    # 8 -> 16 -> 16 -> 4 MLP, then 4 x 10 prototypes, on 3 tokens.
    macs = 8 * 16 + 16 * 16 + 16 * 4 + 4 * 10
    assert flops.projection_head_flops(8, 16, 4, 3, 10, tokens=3) == (
        2 * 3 * macs
    )
    # One layer: straight to the bottleneck.
    assert flops.projection_head_flops(8, 16, 4, 1, 10) == 2 * (8 * 4 + 40)


def test_pretraining_step_flops_match_hand_count():
    from training.config import PretrainConfig

    config = PretrainConfig.tiny(
        "tips", global_crop_size=28, local_crop_size=14, num_local_crops=2,
        head_hidden_dim=16, head_bottleneck_dim=4, head_num_layers=2,
        cls_num_prototypes=10, patch_num_prototypes=6, text_max_length=5,
    )
    vision = {"hidden_dim": 8, "num_layers": 1, "mlp_dim": 16,
              "patch_size": 14, "num_heads": 2, "name": "ignored"}
    text = {"hidden_dim": 8, "num_layers": 3, "mlp_dim": 16}
    encoder = {
        size: flops.vision_encoder_flops(**vision, image_size=(size, size))
        for size in (28, 14)
    }
    captions = flops.text_encoder_flops(**text, sequence_length=5,
                                        batch_size=2)
    cls_head = 2 * (8 * 16 + 16 * 4 + 4 * 10)
    patch_head = 2 * (8 * 16 + 16 * 4 + 4 * 6)
    student = (encoder[28] + 2 * encoder[14] + captions + 2 * cls_head
               + 4 * patch_head)
    teacher = encoder[28] + cls_head + 4 * patch_head
    # Contrastive CLS from the masked pass: no unmasked student pass.
    assert flops.pretraining_step_flops(
        vision, text, config, 3, contrastive_on_masked_view=True
    ) == 3 * (3 * student + teacher)
    # Default: an unmasked student pass for the contrastive CLS.
    assert flops.pretraining_step_flops(vision, text, config, 1) == (
        3 * (student + encoder[28]) + teacher
    )
    # Head-only EMA: that unmasked pass is also the teacher's.
    v2 = config.replace(head_only_ema=True)
    assert flops.pretraining_step_flops(vision, text, v2, 1) == (
        3 * (student + encoder[28]) + teacher - encoder[28]
    )


@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="reads XLA's cost analysis"
)
def test_vision_flops_agree_with_xla_cost_analysis():
    import jax
    import numpy as np

    from keras_tips import TIPSVisionEncoder

    config = {"hidden_dim": 128, "num_layers": 2, "num_heads": 2,
              "mlp_dim": 512, "patch_size": 14, "position_grid_size": 4}
    encoder = TIPSVisionEncoder(**config)
    images = np.zeros((2, 56, 56, 3), "float32")
    values = [v.value for v in encoder.weights]

    def forward(values, images):
        mapping = list(zip(encoder.weights, values))
        with keras.StatelessScope(state_mapping=mapping):
            return encoder(images)["patch_embeddings"]

    analysis = jax.jit(forward).lower(values, images).compile().cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    counted = flops.vision_encoder_flops(**config, image_size=(56, 56),
                                         batch_size=2)
    # XLA also counts norms, softmax and activations: a few percent more.
    assert counted <= analysis["flops"] <= 1.15 * counted


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
    # Where the backend computed: this machine has no GPU.
    assert records[0]["machine"]["gpus"] == []
    assert records[0]["devices"][backend].startswith("cpu"), records[0]
    roofs = {r["dtype"]: r for r in records if r["kind"] == "roofline"}
    assert set(roofs) == {"float32", "bfloat16"}
    assert all(r["gflops"] > 0 for r in roofs.values())
    vision = {
        (r["model"], r["dtype"]): r
        for r in records
        if r["kind"] == "vision"
        and "no XLA" not in r["model"]
        and "torch.compile" not in r["model"]
    }
    assert set(vision) == {
        (m, d)
        for m in ("TIPS quick", "DINOv2 quick")
        for d in ("float32", "bfloat16")
    }
    tips = vision["TIPS quick", "float32"]
    expected = flops.vision_encoder_flops(
        **settings.QUICK_VISION,
        image_size=(settings.QUICK_IMAGE,) * 2,
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
    # The other compiled paths: the same weights, the same outputs.
    compiled = {
        r["model"]: r
        for r in records
        if r["kind"] == "vision" and r["model"] != "TIPS quick"
        and r["model"].startswith("TIPS") and r["dtype"] == "float32"
    }
    expected_paths = {
        "tensorflow": {"TIPS quick (no XLA)"},
        "torch": {"TIPS quick (torch.compile)"},
    }.get(backend, set())
    assert set(compiled) == expected_paths
    for record in compiled.values():
        assert record["max_error_vs_float32"] < 1e-4, record
        assert record["jit_compile"] == (backend == "torch")
    text = [r for r in records if r["kind"] == "text"]
    assert {r["dtype"] for r in text} == {"float32", "bfloat16"}
    assert all(r["sequence_length"] == 16 for r in text)
    training = [r for r in records if r["kind"] == "training"]
    assert training and all("images_per_second" in r for r in training)
    (pipeline,) = [r for r in records if r["kind"] == "input_pipeline"]
    assert pipeline["images_per_s"] > 0 and pipeline["global_crop_size"] == 56
    for record in training:
        assert 0 < record["fraction_of_roofline"] < 1
        assert record["input_pipeline_over_training"] == pytest.approx(
            pipeline["images_per_s"] / record["images_per_second"]
        )
    assert "input pipeline alone" in result.stdout


def test_official_tips_path_is_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="google-deepmind/tips"):
        load_official_module(str(tmp_path))


def test_round_ratio_pairs_calls_of_the_same_round():
    # Round by round 2.0, 1.0, 4.0 -> median 2.0, whatever the drift.
    assert round_ratio([2.0, 10.0, 4.0], [1.0, 10.0, 1.0]) == 2.0


def _benchmark_training(monkeypatch):
    # As run: the script's own folder first on `sys.path`.
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tools"))
    import benchmark_training

    return benchmark_training


def test_gradient_barrier_comparison_alternates_and_reports_ratios(
        monkeypatch, capsys):
    benchmark_training = _benchmark_training(monkeypatch)
    calls = []

    def fake_run_one(backend, config, args, gradient_barrier=True):
        calls.append((backend, config, gradient_barrier))
        seconds = 0.5 if gradient_barrier else 0.75 + 0.25 * len(calls)
        return {"config": config, "backend": backend,
                "gradient_barrier": gradient_barrier,
                "seconds_per_step": seconds}

    monkeypatch.setattr(benchmark_training, "_run_one", fake_run_one)
    benchmark_training.main(
        ["--configs", "tiny", "--compare_gradient_barrier", "2"])
    assert calls == [("jax", "tiny", False), ("jax", "tiny", True)] * 2
    out = capsys.readouterr().out
    # Rounds: (0.75 + 0.25) / 0.5 = 2.00x and (0.75 + 0.75) / 0.5 = 3.00x.
    assert "tiny round 1: without 1.000 s, with 0.500 s per step, 2.00x" in out
    assert "tiny round 2: without 1.500 s, with 0.500 s per step, 3.00x" in out
    assert "tiny: median speed-up 2.50x" in out


def test_gradient_barrier_comparison_stops_on_a_failed_worker(monkeypatch):
    benchmark_training = _benchmark_training(monkeypatch)
    monkeypatch.setattr(
        benchmark_training, "_run_one",
        lambda backend, config, args, gradient_barrier=True: {
            "status": "error", "config": config})
    with pytest.raises(SystemExit, match="tiny: the jax worker failed"):
        benchmark_training.main(
            ["--configs", "tiny", "--compare_gradient_barrier", "1"])


def test_allocator_comparison_alternates_and_reports_ratios(
        monkeypatch, capsys):
    benchmark_training = _benchmark_training(monkeypatch)
    calls = []

    def fake_run_one(backend, config, args, gradient_barrier=True,
                     allocator="training"):
        calls.append((backend, config, allocator))
        seconds = 0.5 if allocator == "retain" else 1.0
        return {"config": config, "backend": backend,
                "seconds_per_step": seconds,
                "peak_rss_mb": 2048 if allocator == "retain" else 1024}

    monkeypatch.setattr(benchmark_training, "_run_one", fake_run_one)
    benchmark_training.main(["--configs", "tiny", "--backends", "torch", "jax",
                             "--compare_allocator", "1"])
    assert calls == [("torch", "tiny", "default"), ("torch", "tiny", "retain"),
                     ("jax", "tiny", "default"), ("jax", "tiny", "retain")]
    out = capsys.readouterr().out
    assert ("tiny torch round 1: default 1.000 s (1.0 GB), freed memory kept"
            " 0.500 s (2.0 GB) per step, 2.00x") in out
    assert "tiny jax: median speed-up 2.00x" in out


@pytest.mark.parametrize("name", ["tiny", "tiny_scenes", "S14"])
def test_training_benchmark_batches_have_what_the_pretrainer_checks(
        monkeypatch, name):
    # The main job's configuration turns the phrase term on: its random
    # batches must carry the phrases, shaped as the pipeline gives them.
    from training.pretrainer import BATCH_RANKS
    from training.pretrainer import PHRASE_BATCH_RANKS

    benchmark_training = _benchmark_training(monkeypatch)
    config = benchmark_training._config(name, "tips", 2, 3)
    (batch,) = benchmark_training._random_batches(
        config, 1, vocabulary_size=512)
    ranks = dict(BATCH_RANKS)
    if config.phrase_text_weight > 0:
        ranks.update(PHRASE_BATCH_RANKS)
    assert sorted(batch) == sorted(ranks)
    for key, rank in ranks.items():
        assert batch[key].ndim == rank, key
        assert batch[key].shape[0] == 2, key
    if name == "tiny_scenes":
        assert config.phrase_text_weight > 0
        phrases = batch["phrase_token_ids"]
        assert phrases.shape == (2, config.max_phrases, config.phrase_length)
        assert phrases.dtype == "int32"
        assert batch["has_phrase"].dtype == "float32"
        # Padding is zero, and an absent phrase is all padding.
        mask = batch["phrase_padding_mask"]
        assert not (phrases * (1 - mask)).any()
        assert not mask[batch["has_phrase"] == 0].any()
        assert mask[batch["has_phrase"] == 1].any(axis=-1).all()
