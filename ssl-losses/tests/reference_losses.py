"""Independent torch re-implementations of every loss, written the way the
published code (W-MSE / CW-RGP releases, SwAV's Sinkhorn) writes them:
per-sub-batch, per-view Python loops with the reference's Whitening2d
(SVD for ZCA), in float64. Usage: python reference_losses.py DIR...
For each DIR, reads DIR/cfg.json and DIR/*.npy written by the Rust test,
writes DIR/loss.npy and DIR/grad_*.npy."""
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


def norm_mse(a, b):
    return 2 - 2 * (F.normalize(a) * F.normalize(b)).sum(-1).mean()


def whiten_ref(x, axis, kind, groups, perm, minus, eps):
    """The reference Whitening2d.forward on one [w, d] sub-batch."""
    w_dim = x.size(-1)
    m = x.mean(0 if axis == "batch" else 1)
    m = m.view(1, -1) if axis == "batch" else m.view(-1, 1)
    xn = x - m
    c = w_dim // groups
    if perm is None:
        perm = list(range(w_dim))
    if axis == "batch":
        xg = xn[:, perm].reshape(-1, groups, c).permute(1, 0, 2)
    else:
        xg = xn[:, perm].reshape(-1, groups, c).permute(1, 2, 0)
    cov = torch.bmm(xg.permute(0, 2, 1), xg) / (xg.shape[1] - minus)
    eye = torch.eye(cov.shape[-1]).expand_as(cov)
    sigma = (1 - eps) * cov + eps * eye
    if kind == "zca":
        u, e, _ = torch.linalg.svd(sigma)
        wm = u @ torch.diag_embed(e.rsqrt()) @ u.transpose(1, 2)
    elif kind == "cholesky":
        wm = torch.linalg.solve_triangular(torch.linalg.cholesky(sigma), eye, upper=False).transpose(1, 2)
    else:
        raise ValueError(kind)
    out = torch.bmm(xg, wm)
    recover = [perm.index(i) for i in range(w_dim)]
    if axis == "batch":
        return out.permute(1, 0, 2).reshape(-1, w_dim)[:, recover]
    return out.permute(2, 0, 1).reshape(-1, w_dim)[:, recover]


def covariance_loss(x, axis):
    if axis == "channel":
        x = x.T
    n, d = x.size()
    x = x - x.mean(dim=0)
    cov = (x.T @ x) / (n - 1)
    return cov[~torch.eye(d, dtype=torch.bool)].pow(2).sum() / d


def pairs(v):
    return [(i, j) for i in range(v - 1) for j in range(i + 1, v)]


def whitening_loss(h):
    views, bs, d = h.shape
    flat = h.reshape(views * bs, d)
    w = cfg["w_size"]
    k = bs // w
    orders = load("orders")
    perms = load("perms") if cfg.get("rgp") else None
    loss_f = norm_mse if cfg["norm"] else F.mse_loss
    loss = 0
    for it in range(cfg["w_iter"]):
        if cfg["transform"] == "identity":
            z = flat
        else:
            z = torch.empty_like(flat)
            order = orders[it]
            for s in range(k):
                idx = order[s * w:(s + 1) * w]
                for v in range(views):
                    rows = idx + v * bs
                    if cfg["transform"] == "bn":
                        z[rows] = F.batch_norm(flat[rows], None, None, training=True, eps=cfg["eps"])
                    else:
                        perm = perms[it, v * k + s].tolist() if perms is not None else None
                        z[rows] = whiten_ref(flat[rows], cfg["axis"], cfg["kind"], cfg["groups"], perm,
                                             cfg["minus"], cfg["eps"])
        for i, j in pairs(views):
            loss = loss + loss_f(z[i * bs:(i + 1) * bs], z[j * bs:(j + 1) * bs])
    loss = loss / (cfg["w_iter"] * len(pairs(views)))
    if cfg.get("cov_weight", 0) and cfg["epoch"] < cfg["cov_stop"]:
        loss = loss + cfg["cov_weight"] * sum(covariance_loss(h[v], cfg["axis"]) for v in range(views))
    return loss


def contrastive_loss(x0, x1, tau):
    bsize = x0.shape[0]
    target = torch.arange(bsize)
    eye_mask = torch.eye(bsize) * 1e9
    x0 = F.normalize(x0, p=2, dim=1)
    x1 = F.normalize(x1, p=2, dim=1)
    logits00 = x0 @ x0.t() / tau - eye_mask
    logits11 = x1 @ x1.t() / tau - eye_mask
    logits01 = x0 @ x1.t() / tau
    logits10 = x1 @ x0.t() / tau
    return (F.cross_entropy(torch.cat([logits01, logits00], dim=1), target)
            + F.cross_entropy(torch.cat([logits10, logits11], dim=1), target)) / 2


def simclr(z):
    views, bs, d = z.shape
    h = z.reshape(views * bs, d)
    if cfg["batch_norm"]:
        h = F.batch_norm(h, None, None, training=True)
    loss = 0
    for i, j in pairs(views):
        loss = loss + contrastive_loss(h[i * bs:(i + 1) * bs], h[j * bs:(j + 1) * bs], cfg["tau"])
    return loss / len(pairs(views))


def byol(p, t):
    t = t.detach()
    loss = 0
    for i, j in pairs(p.shape[0]):
        loss = loss + norm_mse(p[i], t[j]) + norm_mse(p[j], t[i])
    return loss / len(pairs(p.shape[0]))


def simsiam(p, z):
    z = z.detach()
    cos = lambda a, b: -torch.nn.CosineSimilarity(dim=-1)(a, b).mean()
    return (cos(p[0], z[1]) + cos(p[1], z[0])) / 2


def barlow(z):
    bn = lambda x: F.batch_norm(x, None, None, training=True)
    c = bn(z[0]).T @ bn(z[1]) / z.shape[2]
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + cfg["lambda"] * off


def vicreg(z):
    z1, z2 = z[0], z[1]
    sim = F.mse_loss(z1, z2)
    std1 = torch.sqrt(z1.var(dim=0) + 1e-4)
    std2 = torch.sqrt(z2.var(dim=0) + 1e-4)
    var = torch.mean(F.relu(1 - std1)) + torch.mean(F.relu(1 - std2))
    n, d = z1.size()
    c1 = (z1 - z1.mean(0)).T @ (z1 - z1.mean(0)) / (n - 1)
    c2 = (z2 - z2.mean(0)).T @ (z2 - z2.mean(0)) / (n - 1)
    off = ~torch.eye(d, dtype=torch.bool)
    cov = c1[off].pow(2).sum() / d + c2[off].pow(2).sum() / d
    return cfg["sim"] * sim + cfg["var"] * var + cfg["cov"] * cov


def zero_icl(z):
    def standardization(x):
        return (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True)

    def zca_forward(x):
        n, f = x.size()
        f_cov = x.T @ x / (n - 1)
        u, s, _ = torch.linalg.svd(0.9 * f_cov + 0.1 * torch.eye(f))
        rot = (u @ torch.diag(1.0 / torch.sqrt(s + 1e-5)) @ u.T).detach()
        return (rot @ x.T).T

    hidden = z.shape[2]
    z1 = zca_forward(standardization(z[0]).T)
    z2 = zca_forward(standardization(z[1]).T)
    c = z1.T @ z2 / hidden
    return (torch.diagonal(c) - 1).pow(2).sum()


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


FUNCTIONS = {
    "whitening": whitening_loss, "simclr": simclr, "byol": byol, "simsiam": simsiam,
    "barlow": barlow, "vicreg": vicreg, "zero_icl": zero_icl, "swav": swav,
    "norm_mse": norm_mse,
}

for root in sys.argv[1:]:
    cfg = json.load(open(f"{root}/cfg.json"))
    inputs = {n: load(n).requires_grad_() for n in cfg["inputs"]}
    loss = FUNCTIONS[cfg["fn"]](*inputs.values())
    loss.backward()
    np.save(f"{root}/loss.npy", loss.detach().numpy())
    for n, t in inputs.items():
        g = t.grad if t.grad is not None else torch.zeros_like(t)
        np.save(f"{root}/grad_{n}.npy", g.numpy())
