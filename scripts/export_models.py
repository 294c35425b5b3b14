"""Exports torchship's demo model repository (Triton-like layout) with the venv's torch.

models/digits/1/model.pt   a small classifier trained on scikit-learn's 8x8 digits (ships inside the
                           scikit-learn wheel, so nothing is downloaded); input FP32 [-1, 64] raw pixel
                           values 0..16, output FP32 [-1, 10] logits.
models/digits/heldout.json the held-out split (inputs, labels) and the accuracy measured here, so tests can
                           measure accuracy through the server.
models/mlp/1/model.pt      a compute-heavy benchmark model, Linear(1024,4096)-ReLU-Linear(4096,4096)-ReLU-
                           Linear(4096,1000), FP32, input [-1, 1024], output [-1, 1000].
models/digits-aoti/1/model.pt2, models/mlp-aoti/1/model.pt2
                           the same modules (same weights) through torch.export and AOTInductor
                           (platform "pytorch_aoti"): CPU packages with a dynamic batch dimension
                           1..max_batch_size of their config.toml. Compiling needs a C++ compiler
                           (g++) and takes ~20 s per model; the kernels target this machine's CPU
                           (-march=native) unless TORCHINDUCTOR_CPP_MARCH / ATEN_CPU_CAPABILITY say
                           otherwise (the container image builds for x86-64-v3 / AVX2).

The model configs (models/*/config.toml) are hand-written and committed; this script only makes weights.
Everything is seeded and trained on one CPU thread, so the output is the same on every run.
"""

import argparse
import json
import os
import time

import torch
from torch import nn

SEED = 0
FORMATS = ("torchscript", "aoti")


def max_batch_size(out: str, name: str) -> int:
    """The AOTI package's batch bound is its committed config.toml's max_batch_size."""
    with open(f"{out}/{name}/config.toml") as f:
        for line in f:
            if line.startswith("max_batch_size"):
                return int(line.split("=")[1])
    raise SystemExit(f"{out}/{name}/config.toml has no max_batch_size")


def export_aoti(module: nn.Module, width: int, out: str, name: str) -> None:
    """torch.export with a dynamic batch dimension, then AOTInductor, into <name>/1/model.pt2.

    backed_size_oblivious: without it torch.export specialises sizes 0 and 1, and the package's
    own input check (the server turns it on) refuses a batch of 1 even for Dim(min=1)."""
    started = time.monotonic()
    batch = torch.export.Dim("batch", min=1, max=max_batch_size(out, name))
    example = (torch.zeros(2, width),)
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        exported = torch.export.export(module, example, dynamic_shapes=({0: batch},))
        os.makedirs(f"{out}/{name}/1", exist_ok=True)
        torch._inductor.aoti_compile_and_package(exported, package_path=f"{out}/{name}/1/model.pt2")
    print(f"{name}: AOTInductor package compiled in {time.monotonic() - started:.0f} s")


class Digits(nn.Module):
    """Scales raw 0..16 pixels inside the model so clients send the dataset's values as they are."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels / 16.0)


def export_digits(out: str, formats) -> None:
    # Imported here so that `--models mlp` needs torch alone (the GPU check's machine has no sklearn).
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    torch.manual_seed(SEED)
    model = Digits()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt = torch.tensor(x_train, dtype=torch.float32)
    yt = torch.tensor(y_train, dtype=torch.long)
    for _ in range(300):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(torch.tensor(x_test, dtype=torch.float32)).argmax(dim=1)
    accuracy = float((pred == torch.tensor(y_test)).float().mean())
    if "torchscript" in formats:
        os.makedirs(f"{out}/digits/1", exist_ok=True)
        torch.jit.script(model).save(f"{out}/digits/1/model.pt")
    if "aoti" in formats:
        export_aoti(model, 64, out, "digits-aoti")
    with open(f"{out}/digits/heldout.json", "w") as f:
        json.dump(
            {
                "source": "sklearn.datasets.load_digits, train_test_split(test_size=0.2, random_state=0, stratify=y)",
                "accuracy": accuracy,
                "labels": [int(v) for v in y_test],
                "inputs": [[float(v) for v in row] for row in x_test],
            },
            f,
        )
    print(f"digits: held-out accuracy {accuracy:.4f} on {len(y_test)} rows (loss {loss.item():.4f})")


def export_mlp(out: str, formats) -> None:
    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)
    ).eval()
    if "torchscript" in formats:
        os.makedirs(f"{out}/mlp/1", exist_ok=True)
        torch.jit.script(model).save(f"{out}/mlp/1/model.pt")
    if "aoti" in formats:
        export_aoti(model, 1024, out, "mlp-aoti")
    params = sum(p.numel() for p in model.parameters())
    print(f"mlp: {params / 1e6:.1f}M parameters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models", help="model repository folder")
    parser.add_argument("--models", default="digits,mlp", help="which models, comma-separated")
    parser.add_argument("--formats", default=",".join(FORMATS),
                        help="torchscript (model.pt), aoti (<name>-aoti/1/model.pt2), comma-separated")
    args = parser.parse_args()
    formats = args.formats.split(",")
    if unknown := set(formats) - set(FORMATS):
        parser.error(f"unknown format(s) {sorted(unknown)}; known: {', '.join(FORMATS)}")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    exporters = {"digits": export_digits, "mlp": export_mlp}
    for name in args.models.split(","):
        exporters[name](args.out, formats)


if __name__ == "__main__":
    main()
