"""Float64 ports of the loss code of the CW-RGP release (GitHub repository
winci-ai/CW-RGP), for `release_port.rs`.

One function per release function, named `<folder>_<file>_<Class>_<method>`
after the file it ports, whose statements it follows in order. A port
departs from its file only where a test must:

- inputs are the head (or predictor) outputs, not images: `self.model` and
  `self.head` are the caller's; `h` is `torch.cat` of the views' outputs,
  `[views * bs, d]`, as the release's head returns it;
- the random draws (`torch.randperm` of the sub-batches and of the channel
  shuffles) are read from the test's arrays, i.e. drawn by our RNG;
- everything runs in float64 on the CPU: `.cuda()` is dropped, and so are
  Zero-ICL's `.float()` casts (they would round to float32);
- learnable batch norms (SimCLR's `bn_last`, Barlow Twins' `bn`) are
  `F.batch_norm` in training mode with the given weight and bias (ones and
  zeros are their initial values);
- deprecated torch calls the release makes (`Tensor.svd`, `torch.cholesky`,
  `torch.triangular_solve`) are made as written, their warnings silenced.

Usage: python release_port.py DIR...; each DIR holds cfg.json and the
inputs as .npy (written by the Rust test); the loss goes to DIR/loss.npy
and the gradient of each input to DIR/grad_<name>.npy.
"""
import json
import math
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

warnings.filterwarnings("ignore", category=UserWarning)
torch.set_default_dtype(torch.float64)
torch.set_num_threads(1)


class Obj:
    """The attributes a release object's methods read (`self.<name>`)."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


# ---- base/methods/losses.py (ImageNet/methods/losses.py is the same) ----

def base_methods_losses_norm_mse_loss(x0, x1):
    x0 = F.normalize(x0)
    x1 = F.normalize(x1)
    return 2 - 2 * (x0 * x1).sum(dim=-1).mean()


def base_methods_losses_cosine_loss(x0, x1):
    return -torch.nn.CosineSimilarity(dim=-1)(x0, x1).mean()


def ImageNet_methods_losses_covariance_loss(x, axis):
    if axis == 0:
        x = x.T
    N, D = x.size()
    x = x - x.mean(dim=0)
    cov_x = (x.T @ x) / (N - 1)
    diag = torch.eye(D, device=x.device)
    return cov_x[~diag.bool()].pow_(2).sum() / D


# ---- base/methods/contrastive.py ----

def base_methods_contrastive_contrastive_loss(x0, x1, tau, norm):
    bsize = x0.shape[0]
    target = torch.arange(bsize)
    eye_mask = torch.eye(bsize) * 1e9
    if norm:
        x0 = F.normalize(x0, p=2, dim=1)
        x1 = F.normalize(x1, p=2, dim=1)
    logits00 = x0 @ x0.t() / tau - eye_mask
    logits11 = x1 @ x1.t() / tau - eye_mask
    logits01 = x0 @ x1.t() / tau
    logits10 = x1 @ x0.t() / tau
    return (F.cross_entropy(torch.cat([logits01, logits00], dim=1), target)
            + F.cross_entropy(torch.cat([logits10, logits11], dim=1), target)) / 2


def base_methods_contrastive_Contrastive_forward(self, h, bs):
    h = self.bn_last(h)
    loss = 0
    for i in range(self.num_samples - 1):
        for j in range(i + 1, self.num_samples):
            x0 = h[i * bs:(i + 1) * bs]
            x1 = h[j * bs:(j + 1) * bs]
            loss += self.loss_f(x0, x1)
    loss /= self.num_pairs
    return loss


# ---- base/methods/whitening.py (training mode, track_running_stats=False) ----

def base_methods_whitening_Whitening2d_forward(self, x, shuffle=None):
    assert self.axis in (0, 1)
    w_dim = x.size(-1)
    assert w_dim % self.group == 0
    m = x.mean(0 if self.axis == 1 else 1)
    m = m.view(1, -1) if self.axis == 1 else m.view(-1, 1)
    xn = x - m
    sigma_dim = w_dim // self.group
    if self.axis == 1:
        eye = torch.eye(sigma_dim).type(xn.type()).reshape(1, sigma_dim, sigma_dim).repeat(self.group, 1, 1)
    else:
        eye = torch.eye(x.size(0)).type(xn.type()).reshape(1, x.size(0), x.size(0)).repeat(self.group, 1, 1)
    if shuffle is None:
        shuffle = range(w_dim)
    if self.axis == 1:
        xn_g = xn[:, shuffle].reshape(-1, self.group, sigma_dim).permute(1, 0, 2)
    else:
        xn_g = xn[:, shuffle].reshape(-1, self.group, sigma_dim).permute(1, 2, 0)
    f_cov = torch.bmm(xn_g.permute(0, 2, 1), xn_g) / (xn_g.shape[1] - self.minus)
    sigma = (1 - self.eps) * f_cov + self.eps * eye
    matrix = self.whiten_matrix(sigma, eye)
    decorrelated = torch.bmm(xn_g, matrix)
    shuffle_recover = [shuffle.index(i) for i in range(w_dim)]
    if self.axis == 1:
        decorrelated = decorrelated.permute(1, 0, 2).reshape(-1, w_dim)[:, shuffle_recover]
    else:
        decorrelated = decorrelated.permute(2, 0, 1).reshape(-1, w_dim)[:, shuffle_recover]
    return decorrelated


def base_methods_whitening_Whitening2dCholesky_whiten_matrix(sigma, eye):
    wm = torch.triangular_solve(eye, torch.cholesky(sigma), upper=False)[0]
    return wm.permute(0, 2, 1)


def base_methods_whitening_Whitening2dZCA_whiten_matrix(sigma, eye):
    u, eig, _ = sigma.svd()
    scale = eig.rsqrt()
    wm = torch.bmm(u, torch.diag_embed(scale))
    return torch.bmm(wm, u.permute(0, 2, 1))


def whitening2d(cfg, whiten_matrix):
    """`Whitening2d<Kind>(track_running_stats=False, eps=w_eps, axis, minus, group)`."""
    self = Obj(eps=cfg["w_eps"], axis=cfg["axis"], minus=cfg["minus"], group=cfg["group"],
               whiten_matrix=whiten_matrix)
    return lambda x, shuffle=None: base_methods_whitening_Whitening2d_forward(self, x, shuffle)


# ---- the forward of base/methods/{cwrgp,wmse,bn,plain}.py ----
# The four files share this forward statement for statement (bn.py and
# plain.py call `self.whitening(x)` without a shuffle); `draw` stands for
# their `torch.randperm` calls.

def base_methods_cwrgp_CW_RGP_forward(self, h, bs, draw):
    w_dim = h[0].size(-1)
    loss = 0
    for it in range(self.w_iter):
        z = torch.empty_like(h)
        perm = draw.sub_batches(it).view(-1, self.w_size)
        for s, idx in enumerate(perm):
            for i in range(self.num_samples):
                if self.rand_group:
                    shuffle = draw.shuffle(it, i, s, w_dim)
                else:
                    shuffle = None
                z[idx + i * bs] = self.whitening(h[idx + i * bs], shuffle)
        for i in range(self.num_samples - 1):
            for j in range(i + 1, self.num_samples):
                x0 = z[i * bs:(i + 1) * bs]
                x1 = z[j * bs:(j + 1) * bs]
                loss += self.loss_f(x0, x1)
    loss /= self.w_iter * self.num_pairs
    return loss


# ---- ImageNet/methods/cwrgp.py: the same, plus the covariance term ----

def ImageNet_methods_cwrgp_CW_RGP_forward(self, h, bs, draw):
    w_dim = h[0].size(-1)
    mse_loss = 0
    cov_loss = 0
    if self.cov_w != 0:
        for i in range(self.num_samples):
            cov_loss += ImageNet_methods_losses_covariance_loss(h[i * bs:(i + 1) * bs], self.axis)
    for it in range(self.w_iter):
        z = torch.empty_like(h)
        perm = draw.sub_batches(it).view(-1, self.w_size)
        for s, idx in enumerate(perm):
            for i in range(self.num_samples):
                if self.rand_group:
                    shuffle = draw.shuffle(it, i, s, w_dim)
                else:
                    shuffle = None
                z[idx + i * bs] = self.whitening(h[idx + i * bs], shuffle)
        for i in range(self.num_samples - 1):
            for j in range(i + 1, self.num_samples):
                x0 = z[i * bs:(i + 1) * bs]
                x1 = z[j * bs:(j + 1) * bs]
                mse_loss += self.loss_f(x0, x1)
    mse_loss /= self.w_iter * self.num_pairs
    return mse_loss + self.cov_w * cov_loss


def ImageNet_methods_cwrgp_CW_RGP_step(self, epoch):
    if epoch >= self.cov_stop:
        self.cov_w = 0


# ---- base/methods/byol.py ----

def base_methods_byol_BYOL_forward(self, z, zt):
    """`z`: the online predictions of each view, `zt`: the target's (no grad)."""
    zt = [x.detach() for x in zt]
    loss = 0
    for i in range(self.num_samples - 1):
        for j in range(i + 1, self.num_samples):
            loss += self.loss_f(z[i], zt[j]) + self.loss_f(z[j], zt[i])
    loss /= self.num_pairs
    return loss


def base_methods_byol_BYOL_step_tau(self, progress):
    """The τ `BYOL.step(progress)` hands to `update_target`."""
    return 1 - (1 - self.byol_tau) * (math.cos(math.pi * progress) + 1) / 2


# ---- base/methods/simsiam.py (loss='cos') ----

def base_methods_simsiam_SIMSIAM_forward(self, z, p):
    z_stop = [x.detach() for x in z]
    return (self.loss_f(p[0], z_stop[1]) + self.loss_f(p[1], z_stop[0])) / 2


# ---- base/methods/barlow_twins.py ----

def base_methods_barlow_twins_off_diagonal(x):
    n, m = x.shape
    assert n == m
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def base_methods_barlow_twins_BARLOW_TWINS_forward(self, z1, z2):
    c = self.bn(z1).T @ self.bn(z2)
    c.div_(len(z1[0]))
    on_diag = torch.diagonal(c).add_(-1).pow_(2).sum()
    off_diag = base_methods_barlow_twins_off_diagonal(c).pow_(2).sum()
    return on_diag + self.lamb * off_diag


# ---- base/methods/vicreg.py ----

def base_methods_vicreg_invariance_loss(z1, z2):
    return F.mse_loss(z1, z2)


def base_methods_vicreg_variance_loss(z1, z2):
    eps = 1e-4
    std_z1 = torch.sqrt(z1.var(dim=0) + eps)
    std_z2 = torch.sqrt(z2.var(dim=0) + eps)
    return torch.mean(F.relu(1 - std_z1)) + torch.mean(F.relu(1 - std_z2))


def base_methods_vicreg_covariance_loss(z1, z2):
    N, D = z1.size()
    z1 = z1 - z1.mean(dim=0)
    z2 = z2 - z2.mean(dim=0)
    cov_z1 = (z1.T @ z1) / (N - 1)
    cov_z2 = (z2.T @ z2) / (N - 1)
    diag = torch.eye(D, device=z1.device)
    return cov_z1[~diag.bool()].pow_(2).sum() / D + cov_z2[~diag.bool()].pow_(2).sum() / D


def base_methods_vicreg_VICREG_forward(self, z1, z2):
    sim_loss = base_methods_vicreg_invariance_loss(z1, z2)
    var_loss = base_methods_vicreg_variance_loss(z1, z2)
    cov_loss = base_methods_vicreg_covariance_loss(z1, z2)
    return self.sim_loss_weight * sim_loss + self.var_loss_weight * var_loss + self.cov_loss_weight * cov_loss


# ---- base/methods/zero_icl.py ----

def base_methods_zero_icl_standardization(data, dim=-1):
    mu = torch.mean(data, dim=dim, keepdim=True)
    sigma = torch.std(data, dim=dim, keepdim=True)
    return (data - mu) / sigma


def base_methods_zero_icl_WhitenTran_zca_forward(x):
    batch_size, feature_dim = x.size()
    f_cov = torch.mm(x.transpose(0, 1), x) / (batch_size - 1)
    eye = torch.eye(feature_dim).to(f_cov.device)
    U, S, V = torch.linalg.svd(0.9 * f_cov + 0.1 * eye)
    diag = torch.diag(1.0 / torch.sqrt(S + 1e-5))
    rotate_mtx = torch.mm(torch.mm(U, diag), U.transpose(0, 1)).detach()
    return torch.mm(rotate_mtx, x.transpose(0, 1)).transpose(0, 1)


def base_methods_zero_icl_ZeroICL_ins_loss(z1, z2):
    hidden = z1.size(1)
    z1 = base_methods_zero_icl_standardization(z1)
    z2 = base_methods_zero_icl_standardization(z2)
    z1 = base_methods_zero_icl_WhitenTran_zca_forward(z1.transpose(0, 1))
    z2 = base_methods_zero_icl_WhitenTran_zca_forward(z2.transpose(0, 1))
    c = torch.mm(z1.transpose(0, 1), z2)
    c.div_(hidden)
    return torch.diagonal(c).add_(-1).pow_(2).sum()


# ---- the cases: our [views, m, d] inputs in the release's calls ----

class Draw:
    """The release's `torch.randperm` draws, as the Rust test drew them:
    `orders[it]` is the sub-batch order of iteration `it`, and
    `perms[it, i * k + s]` the channel shuffle of view `i`, sub-batch `s`."""

    def __init__(self, orders, perms, k):
        self.orders, self.perms, self.k = orders, perms, k

    def sub_batches(self, it):
        return self.orders[it]

    def shuffle(self, it, i, s, w_dim):
        p = self.perms[it, i * self.k + s].tolist()
        assert len(p) == w_dim
        return p


def batch_norm(weight, bias):
    """A `BatchNorm1d` in training mode with these parameters."""
    return lambda x: F.batch_norm(x, None, None, weight, bias, training=True, momentum=0.1, eps=1e-5)


def arg(inputs, name):
    """An input (its gradient is compared) or else a constant data file."""
    return inputs[name] if name in inputs else load(name)


def whitening_case(cfg, inputs):
    h = inputs["h"]
    views, bs, d = h.shape
    flat = h.reshape(views * bs, d)
    kind = cfg["kind"]
    if kind == "bn":
        whitening = lambda x, shuffle=None: F.batch_norm(x, None, None, training=True, eps=cfg["w_eps"])
    elif kind == "plain":
        whitening = lambda x, shuffle=None: x
    elif kind == "zca":
        whitening = whitening2d(cfg, base_methods_whitening_Whitening2dZCA_whiten_matrix)
    elif kind == "cholesky":
        whitening = whitening2d(cfg, base_methods_whitening_Whitening2dCholesky_whiten_matrix)
    else:
        raise ValueError(kind)
    self = Obj(w_iter=cfg["w_iter"], w_size=cfg["w_size"], num_samples=views,
               num_pairs=views * (views - 1) // 2, rand_group=cfg["rand_group"], whitening=whitening,
               loss_f=base_methods_losses_norm_mse_loss if cfg["norm"] else F.mse_loss,
               axis=cfg.get("axis"), cov_w=cfg.get("cov_w", 0), cov_stop=cfg.get("cov_stop"))
    draw = Draw(load("orders"), load("perms") if cfg["rand_group"] else None, bs // cfg["w_size"])
    if "cov_w" not in cfg:
        return base_methods_cwrgp_CW_RGP_forward(self, flat, bs, draw)
    # ImageNet/train.py calls model.step(epoch) after every step: within
    # an epoch past the first step, the term is off iff epoch >= cov_stop.
    ImageNet_methods_cwrgp_CW_RGP_step(self, cfg["epoch"])
    return ImageNet_methods_cwrgp_CW_RGP_forward(self, flat, bs, draw)


def contrastive_case(cfg, inputs):
    z = inputs["z"]
    views, bs, d = z.shape
    self = Obj(num_samples=views, num_pairs=views * (views - 1) // 2,
               bn_last=batch_norm(arg(inputs, "weight"), arg(inputs, "bias")),
               loss_f=lambda x0, x1: base_methods_contrastive_contrastive_loss(x0, x1, cfg["tau"], True))
    return base_methods_contrastive_Contrastive_forward(self, z.reshape(views * bs, d), bs)


def byol_case(cfg, inputs):
    p, t = inputs["p"], inputs["t"]
    views = p.shape[0]
    self = Obj(num_samples=views, num_pairs=views * (views - 1) // 2, loss_f=base_methods_losses_norm_mse_loss)
    return base_methods_byol_BYOL_forward(self, list(p), list(t))


def simsiam_case(cfg, inputs):
    self = Obj(loss_f=base_methods_losses_cosine_loss)
    return base_methods_simsiam_SIMSIAM_forward(self, list(inputs["z"]), list(inputs["p"]))


def barlow_case(cfg, inputs):
    z = inputs["z"]
    self = Obj(bn=batch_norm(arg(inputs, "weight"), arg(inputs, "bias")), lamb=cfg["lambda"])
    return base_methods_barlow_twins_BARLOW_TWINS_forward(self, z[0], z[1])


def vicreg_case(cfg, inputs):
    z = inputs["z"]
    self = Obj(sim_loss_weight=cfg["sim"], var_loss_weight=cfg["var"], cov_loss_weight=cfg["cov"])
    return base_methods_vicreg_VICREG_forward(self, z[0], z[1])


def zero_icl_case(cfg, inputs):
    z = inputs["z"]
    return base_methods_zero_icl_ZeroICL_ins_loss(z[0], z[1])


def norm_mse_case(cfg, inputs):
    return base_methods_losses_norm_mse_loss(inputs["a"], inputs["b"])


def byol_tau_case(cfg, inputs):
    """The τ of every epoch: base/train.py calls `model.step(epoch / cfg.epochs)`."""
    self = Obj(byol_tau=cfg["tau0"])
    epochs = cfg["epochs"]
    return torch.tensor([base_methods_byol_BYOL_step_tau(self, epoch / epochs) for epoch in range(epochs)])


CASES = {
    "whitening": whitening_case, "contrastive": contrastive_case, "byol": byol_case,
    "simsiam": simsiam_case, "barlow_twins": barlow_case, "vicreg": vicreg_case,
    "zero_icl": zero_icl_case, "norm_mse": norm_mse_case, "byol_tau": byol_tau_case,
}

root = cfg = None


def load(name):
    return torch.from_numpy(np.load(f"{root}/{name}.npy"))


if __name__ == "__main__":
    for root in sys.argv[1:]:
        with open(f"{root}/cfg.json") as f:
            cfg = json.load(f)
        inputs = {n: load(n).requires_grad_() for n in cfg["inputs"]}
        loss = CASES[cfg["fn"]](cfg, inputs)
        if loss.requires_grad:
            loss.backward()
        np.save(f"{root}/loss.npy", loss.detach().numpy())
        for n, t in inputs.items():
            g = t.grad if t.grad is not None else torch.zeros_like(t)
            np.save(f"{root}/grad_{n}.npy", g.numpy())
