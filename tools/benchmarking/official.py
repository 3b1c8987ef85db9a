"""The official PyTorch TIPS encoder (google-deepmind/tips), in its own process.

`pytorch/image_encoder.py` of a checkout given by path is loaded in place
(never copied), built with the same weights as our encoder, and served by
`run_official_server` in a subprocess without `KERAS_BACKEND`, so that it
can be timed in the same round-robin as the keras-tips rows.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from .accelerator import torch_device
from .memory import peak_rss_mb
from .settings import BENCHMARK_SCRIPT
from .settings import REPO_ROOT


def load_official_module(tips_path):
    """Imports `pytorch/image_encoder.py` of a google-deepmind/tips checkout.

    The file is loaded by path (the checkout is not a package on
    `sys.path`); xFormers is disabled (a CUDA library: on CPU the official
    model runs its plain PyTorch attention either way) and its import-time
    warnings are silenced. Nothing is copied into this repository.
    """
    import importlib.util
    import warnings

    path = os.path.join(tips_path, "pytorch", "image_encoder.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: --official-tips must be a checkout of "
            "https://github.com/google-deepmind/tips"
        )
    os.environ.setdefault("XFORMERS_DISABLED", "1")
    spec = importlib.util.spec_from_file_location(
        "official_tips_image_encoder", path
    )
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.loader.exec_module(module)
    return module


def build_official_encoder(tips_path, config, arrays=None):
    """The official encoder for a `TIPSVisionEncoder` config.

    Built as `vit_small`/`vit_base`/... of the official code build theirs
    (one register token, memory-efficient attention class, which without
    xFormers is the plain attention) with the arguments of the official
    `run_image_encoder_inference.py`; `arrays` (official-layout weights,
    `keras_tips.convert.official_arrays`) are loaded if given.
    """
    import functools

    import numpy as np
    import torch

    module = load_official_module(tips_path)
    model = module.VisionTransformer(
        img_size=config["patch_size"] * config["position_grid_size"],
        patch_size=config["patch_size"],
        embed_dim=config["hidden_dim"],
        depth=config["num_layers"],
        num_heads=config["num_heads"],
        mlp_ratio=config["mlp_dim"] / config["hidden_dim"],
        block_fn=functools.partial(module.Block, attn_class=module.MemEffAttention),
        num_register_tokens=1,
        ffn_layer=config.get("ffn_layer", "mlp"),
        block_chunks=0,
        init_values=1.0,
        interpolate_antialias=True,
        interpolate_offset=0.0,
    )
    if arrays is not None:
        model.load_state_dict(
            {k: torch.from_numpy(np.asarray(v)) for k, v in arrays.items()}
        )
    return model.eval()


def run_official_server(args):
    """Serves timed forward passes of the official encoder over stdin/stdout.

    Commands (one JSON object per line): `{"load": npz, "config": {...},
    "image": 224, "batch": 8}` builds the model with those weights and
    random images; `{"run": true}` runs one forward pass under
    `torch.inference_mode()` (outputs converted to NumPy, as ours are) and
    answers the seconds it took, on the GPU where PyTorch sees one (as
    Keras' backends do), measured here so that the pipe is not
    timed; `{"rss": true}` answers this process's peak resident memory.
    While the keras-tips worker runs, this process blocks on its pipe.
    """
    import numpy as np
    import torch

    state = {}
    device = torch_device()
    for line in sys.stdin:
        command = json.loads(line)
        reply = {}
        if "load" in command:
            arrays = dict(np.load(command["load"]))
            state["model"] = build_official_encoder(
                args.official_tips, command["config"], arrays
            ).to(device)
            images = np.random.RandomState(1).uniform(
                size=(command["batch"], command["image"], command["image"], 3)
            ).astype("float32")
            # The official code takes normalised NCHW images; keras-tips
            # normalises inside the model, so this side gets that for free.
            # The images stay in host memory and each call copies them to
            # the device, as `predict_on_batch` does with its NumPy input.
            state["images"] = torch.from_numpy(
                np.ascontiguousarray(images.transpose(0, 3, 1, 2))
            )
            reply["threads"] = torch.get_num_threads()
        elif "run" in command:
            start = time.perf_counter()
            with torch.inference_mode():
                outputs = state["model"](state["images"].to(device))
                [o.cpu().numpy() for o in outputs]
            reply["seconds"] = time.perf_counter() - start
        elif "rss" in command:
            reply["peak_rss_mb"] = peak_rss_mb()
        print(json.dumps(reply), flush=True)


class OfficialEncoder:
    """Client of `run_official_server`, running in a subprocess."""

    def __init__(self, tips_path):
        env = dict(os.environ)
        env.pop("KERAS_BACKEND", None)
        self.process = subprocess.Popen(
            [sys.executable, BENCHMARK_SCRIPT, "--official-server",
             "--official-tips", tips_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=env, cwd=REPO_ROOT,
        )

    def _ask(self, command):
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the official encoder's process exited")
        return json.loads(line)

    def load(self, encoder, config, image, batch):
        import numpy as np

        from keras_tips import convert

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "vision.npz")
            np.savez(path, **convert.official_arrays(encoder))
            return self._ask(
                {"load": path, "config": config, "image": image,
                 "batch": batch}
            )

    def run(self):
        return self._ask({"run": True})["seconds"]

    def peak_rss_mb(self):
        return self._ask({"rss": True})["peak_rss_mb"]

    def close(self):
        self.process.stdin.close()
        self.process.wait(timeout=60)
