"""An independent torch implementation of the SwAV loss, which the CW-RGP
release does not have: SwAV's own `distributed_sinkhorn` (one process) and
swapped prediction, in float64. Every other loss is checked against the
release's code itself (`release_port.py`).
Usage: python swav_reference.py DIR...; for each DIR, reads DIR/cfg.json and
DIR/*.npy written by the Rust test, writes DIR/loss.npy and DIR/grad_*.npy."""
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)
root = cfg = None


def load(name):
    return torch.from_numpy(np.load(f"{root}/{name}.npy"))


def sinkhorn(out, eps, iters):
    q = torch.exp(out / eps).t()
    b, k = q.shape[1], q.shape[0]
    q /= q.sum()
    for _ in range(iters):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


def swav(z, protos):
    views, bs, _ = z.shape
    zn = F.normalize(z.reshape(views * bs, -1), dim=1)
    out = zn @ F.normalize(protos, dim=1).T
    loss = 0
    for i in range(views):
        with torch.no_grad():
            q = sinkhorn(out[bs * i:bs * (i + 1)].detach(), cfg["epsilon"], cfg["iters"])
        sub = 0
        for v in [v for v in range(views) if v != i]:
            x = out[bs * v:bs * (v + 1)] / cfg["temperature"]
            sub -= torch.mean(torch.sum(q * F.log_softmax(x, dim=1), dim=1))
        loss += sub / (views - 1)
    return loss / views


FUNCTIONS = {"swav": swav}

for root in sys.argv[1:]:
    cfg = json.load(open(f"{root}/cfg.json"))
    inputs = {n: load(n).requires_grad_() for n in cfg["inputs"]}
    loss = FUNCTIONS[cfg["fn"]](*inputs.values())
    loss.backward()
    np.save(f"{root}/loss.npy", loss.detach().numpy())
    for n, t in inputs.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        np.save(f"{root}/grad_{n}.npy", g.numpy())
