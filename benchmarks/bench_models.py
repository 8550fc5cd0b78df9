"""Model zoo benchmark (run by hand: ``python benchmarks/bench_models.py``).

1. Per registered model at its paper input size (batch 1): parameters, FLOPs, CPU forward
   time. FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (dispatch-level, so
   it sees every aten op incl. scaled-dot-product attention; one multiply-add = 2 FLOPs).
   fvcore's FlopCountAnalysis is not used: it JIT-traces the model, counts a multiply-add
   as one, and skips ops it has no handle for (SDPA), so it undercounts the transformers.
2. Train step (forward + BCEWithLogits + backward + Adam step), batch 4, 1 x 256^2:
   ``unet`` vs MONAI ``BasicUNet`` with the same widths (64, 128, 256, 512, 1024), and
   ``lintunet`` vs ``unet``. Runs are interleaved (A B A B ...) so load from other
   processes hits both alike; the ratio of medians is reported.

torch.set_num_threads(2) throughout. Prints markdown tables; ``--out FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_tumorseg.models import create_model, get_info, list_models  # noqa: E402


def count_flops(model: torch.nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return counter.get_total_flops()


def time_forward(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        model(x)  # warm-up: allocator, oneDNN primitive caches
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def first_output(y):
    return y[0] if isinstance(y, (list, tuple)) else getattr(y, "logits", y)


def per_model_table(names: list[str], repeats: int) -> list[str]:
    rows = ["| model | paper | input (C x size) | params (M) | GFLOPs | CPU forward, batch 1 (s) |",
            "|---|---|---|---|---|---|"]
    for name in names:
        info = get_info(name)
        torch.manual_seed(0)
        model = create_model(name).eval()
        x = torch.randn(1, info.in_channels, *info.input_size)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        flops = count_flops(model, x) / 1e9
        fwd = time_forward(model, x, repeats)
        size = "x".join(str(s) for s in info.input_size)
        rows.append(f"| {name} | {info.paper[:3]} | {info.in_channels} x {size} | {params:.2f} | "
                    f"{flops:.1f} | {fwd:.2f} |")
        print(rows[-1], flush=True)
        del model
    return rows


def train_step_fn(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()

    def step() -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), t)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def compare(pairs: dict[str, torch.nn.Module], x, t, repeats: int) -> dict[str, float]:
    steps = {k: train_step_fn(m, x, t) for k, m in pairs.items()}
    for s in steps.values():
        s()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, s in steps.items():
            times[k].append(s())
    return {k: statistics.median(v) for k, v in times.items()}


def train_step_table(repeats: int) -> list[str]:
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    x = torch.randn(4, 1, 256, 256)
    t = (torch.rand(4, 1, 256, 256) > 0.9).float()
    ours = create_model("unet", in_channels=1, out_channels=1)
    monai_net = BasicUNet(spatial_dims=2, in_channels=1, out_channels=1,
                          features=(64, 128, 256, 512, 1024, 64))
    lint = create_model("lintunet", in_channels=1, out_channels=1)
    med = compare({"unet": ours, "monai": monai_net, "lintunet": lint}, x, t, repeats)
    p = {k: sum(q.numel() for q in m.parameters()) / 1e6
         for k, m in {"unet": ours, "monai": monai_net, "lintunet": lint}.items()}
    r1 = med["unet"] / med["monai"]
    r2 = med["lintunet"] / med["unet"]
    return [
        "| train step, batch 4, 1 x 256^2 | params (M) | median step (s) | ratio | target | met |",
        "|---|---|---|---|---|---|",
        f"| MONAI BasicUNet (64..1024) | {p['monai']:.2f} | {med['monai']:.2f} | 1.00 | | |",
        f"| ours `unet` | {p['unet']:.2f} | {med['unet']:.2f} | {r1:.2f}x vs MONAI | <= 1.0x | "
        f"{'yes' if r1 <= 1.0 else 'no'} |",
        f"| ours `lintunet` | {p['lintunet']:.2f} | {med['lintunet']:.2f} | {r2:.2f}x vs `unet` | "
        f"<= 1.15x | {'yes' if r2 <= 1.15 else 'no'} |",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", help="subset of registered models (default: all)")
    ap.add_argument("--repeats", type=int, default=2, help="timed forward passes per model")
    ap.add_argument("--train-repeats", type=int, default=3, help="timed train steps per net")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--out", type=Path, help="also write the tables (markdown) here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    names = args.models or list_models()
    header = [f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads, FLOPs by torch.utils.flop_counter."
              "FlopCounterMode (multiply-add = 2 FLOPs)", ""]
    print("\n".join(header), flush=True)
    lines = header + per_model_table(names, args.repeats)
    if not args.skip_train:
        print("", flush=True)
        table = train_step_table(args.train_repeats)
        print("\n".join(table), flush=True)
        lines += [""] + table
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
