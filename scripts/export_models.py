"""Exports torchship's demo model repository (Triton-like layout) with the venv's torch.

models/digits/1/model.pt   a small classifier trained on scikit-learn's 8x8 digits (ships inside the
                           scikit-learn wheel, so nothing is downloaded); input FP32 [-1, 64] raw pixel
                           values 0..16, output FP32 [-1, 10] logits.
models/digits/heldout.json the held-out split (inputs, labels) and the accuracy measured here, so tests can
                           measure accuracy through the server.
models/mlp/1/model.pt      a compute-heavy benchmark model, Linear(1024,4096)-ReLU-Linear(4096,4096)-ReLU-
                           Linear(4096,1000), FP32, input [-1, 1024], output [-1, 1000].

The model configs (models/*/config.toml) are hand-written and committed; this script only makes weights.
Everything is seeded and trained on one CPU thread, so the output is the same on every run.
"""

import argparse
import json
import os

import torch
from torch import nn

SEED = 0


class Digits(nn.Module):
    """Scales raw 0..16 pixels inside the model so clients send the dataset's values as they are."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net(pixels / 16.0)


def export_digits(out: str) -> None:
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
    os.makedirs(f"{out}/digits/1", exist_ok=True)
    torch.jit.script(model).save(f"{out}/digits/1/model.pt")
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


def export_mlp(out: str) -> None:
    torch.manual_seed(SEED)
    model = nn.Sequential(
        nn.Linear(1024, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000)
    ).eval()
    os.makedirs(f"{out}/mlp/1", exist_ok=True)
    torch.jit.script(model).save(f"{out}/mlp/1/model.pt")
    params = sum(p.numel() for p in model.parameters())
    print(f"mlp: {params / 1e6:.1f}M parameters")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models", help="model repository folder")
    parser.add_argument("--models", default="digits,mlp", help="which models, comma-separated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    exporters = {"digits": export_digits, "mlp": export_mlp}
    for name in args.models.split(","):
        exporters[name](args.out)


if __name__ == "__main__":
    main()
