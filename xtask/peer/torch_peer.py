#!/usr/bin/env python3
"""The peer of `cargo xtask bench`: our benchmarks' work done the way the
published PyTorch release of CW-RGP does it (Weng et al., "An Investigation
into Whitening Loss for Self-supervised Learning", NeurIPS 2022; code at
github.com/winci-ai/CW-RGP, `base/` for CIFAR, STL-10 and Tiny-ImageNet,
`ImageNet/` for ImageNet).

Each case follows the release's code path on the CPU: the same tensor
operations in the same order, the same torchvision datasets, transforms and
`DataLoader`, including the release's Python-level loops and list handling,
since those are part of what the release costs. Each function's docstring
names the files it follows and where it departs from them (only where the
release needs a GPU or the real dataset files).

Prints one line per figure, `peer | CASE | UNIT | VALUE`, with the same CASE
labels as our examples (`ours | CASE | UNIT | VALUE`), so that xtask pairs
them. Run it beside our benchmark on the same machine and compare ratios,
never absolute times from different runs.

Needs Python 3 with torch, torchvision, numpy and pillow (the venv that
`cargo xtask setup` creates). Usage:

    python3 xtask/peer/torch_peer.py [loss|aug|step|eval|all] [--threads N] [--data DIR]

`--data DIR` (for `aug`): read the STL-10 binary files and ImageNet JPEGs
that our `bench_data` example wrote into DIR (`stl10_binary/`, `imagenet/`),
so that both sides process the same files; without it the script writes its
own into a temporary folder.
"""
import argparse
import ctypes
import os
import random
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The release calls torch.cholesky / torch.triangular_solve / Tensor.svd,
# which newer torch marks deprecated (once per process, on stderr).
warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

# Batch size of every loss case (the paper's CIFAR / STL-10 batch).
LOSS_BS = 256


def median_seconds(fn, reps, warm=2):
    """Median wall time of `reps` calls of `fn` after `warm` untimed ones."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return upper_median(times)


def upper_median(values):
    """The middle value, the upper one of an even count (as our examples take it)."""
    return sorted(values)[len(values) // 2]


# ---------------------------------------------------------------- losses --


def zca_matrix(sigma, eye):
    """`Whitening2dZCA.whiten_matrix` (base/methods/whitening.py):
    U diag(λ^-1/2) Uᵀ from the SVD of each group's covariance."""
    svd = getattr(sigma, "svd", None)
    if svd is not None:
        u, eig, _ = svd()
    else:  # Tensor.svd removed: the same LAPACK SVD
        u, eig, _ = torch.linalg.svd(sigma)
    return torch.bmm(torch.bmm(u, torch.diag_embed(eig.rsqrt())), u.permute(0, 2, 1))


def cholesky_matrix(sigma, eye):
    """`Whitening2dCholesky.whiten_matrix` (base/methods/whitening.py):
    (L⁻¹)ᵀ with Σ = L Lᵀ, L⁻¹ by a triangular solve against the identity."""
    if hasattr(torch, "triangular_solve") and hasattr(torch, "cholesky"):
        inv_l = torch.triangular_solve(eye, torch.cholesky(sigma), upper=False)[0]
    else:  # the deprecated calls removed: the same LAPACK routines
        inv_l = torch.linalg.solve_triangular(torch.linalg.cholesky(sigma), eye, upper=False)
    return inv_l.permute(0, 2, 1)


class ReleaseWhitening:
    """`Whitening2d.forward` of base/methods/whitening.py as CW-RGP and
    W-MSE construct it: training mode, `track_running_stats=False`,
    `eps = w_eps = 0` (cfg.py's default), `minus = 1`.

    axis 0 (CW, the paper's channel whitening): every sample is centred over
    its channels and the `w × w` covariance of each channel group is
    whitened. axis 1 (BW, W-MSE): centred over the batch, one
    `(d/g) × (d/g)` covariance per group. `shuffle` is the random channel
    permutation as a Python list (or None); the release undoes it with
    `list.index` per channel, as done here.
    """

    def __init__(self, axis, group, whiten_matrix, eps=0.0, minus=1):
        self.axis, self.group, self.whiten_matrix = axis, group, whiten_matrix
        self.eps, self.minus = eps, minus

    def __call__(self, x, shuffle=None):
        w_dim = x.size(-1)
        per_sample = self.axis == 0
        mean = x.mean(1 if per_sample else 0)
        xn = x - (mean.view(-1, 1) if per_sample else mean.view(1, -1))
        sigma_dim = w_dim // self.group
        side = x.size(0) if per_sample else sigma_dim
        eye = torch.eye(side).type(xn.type()).reshape(1, side, side).repeat(self.group, 1, 1)
        if shuffle is None:
            shuffle = list(range(w_dim))
        grouped = xn[:, shuffle].reshape(-1, self.group, sigma_dim)
        grouped = grouped.permute(1, 2, 0) if per_sample else grouped.permute(1, 0, 2)
        cov = torch.bmm(grouped.permute(0, 2, 1), grouped) / (grouped.shape[1] - self.minus)
        sigma = (1 - self.eps) * cov + self.eps * eye
        white = torch.bmm(grouped, self.whiten_matrix(sigma, eye))
        recover = [shuffle.index(c) for c in range(w_dim)]
        white = white.permute(2, 0, 1) if per_sample else white.permute(1, 0, 2)
        return white.reshape(-1, w_dim)[:, recover]


def norm_mse_loss(x0, x1):
    """`norm_mse_loss` of base/methods/losses.py: 2 − 2·mean cos(x0, x1)."""
    x0 = F.normalize(x0)
    x1 = F.normalize(x1)
    return 2 - 2 * (x0 * x1).sum(dim=-1).mean()


def release_whitening_loss(h, views, whitening, w_size, w_iter=1, rand_group=True):
    """The loss part of `CW_RGP.forward` (base/methods/cwrgp.py) and
    `WMSE.forward` (base/methods/wmse.py), which are the same loop: `h` is
    the head's output for all views, view-major (`views · bs` rows). Per
    whitening iteration, a random split of the batch into sub-batches of
    `w_size`; per sub-batch and view, a fresh channel permutation (cfg.py's
    `rand_group`, on by default) and one whitening; then the normalised MSE
    over all view pairs, averaged."""
    bs = h.shape[0] // views
    w_dim = h[0].size(-1)
    pairs = views * (views - 1) // 2
    loss = 0
    for _ in range(w_iter):
        z = torch.empty_like(h)
        for idx in torch.randperm(bs).view(-1, w_size):
            for v in range(views):
                shuffle = torch.randperm(w_dim).tolist() if rand_group else None
                z[idx + v * bs] = whitening(h[idx + v * bs], shuffle)
        for i in range(views - 1):
            for j in range(i + 1, views):
                loss += norm_mse_loss(z[i * bs:(i + 1) * bs], z[j * bs:(j + 1) * bs])
    return loss / (w_iter * pairs)


def loss_cases():
    """(label, views, d, w_size, whitening) of our `bench_losses` example.

    CW-RGP: `CW_RGP` with `--axis 0 --group 4 --w_size 64`, ZCA
    (scripts/base.sh, CIFAR-10 rows). One whitening iteration in both
    cases, the work the labels name and our side does (that script's
    CW-RGP 2 row trains with `--w_iter 4`, i.e. this loop four times).
    W-MSE 4: `WMSE` with `--axis 1 --emb 64 --w_size 128`, Cholesky, one
    group; cfg.py's default `rand_group` still draws and undoes a
    permutation per sub-batch and view, as the release does.
    """
    cw = ReleaseWhitening(axis=0, group=4, whiten_matrix=zca_matrix)
    bw = ReleaseWhitening(axis=1, group=1, whiten_matrix=cholesky_matrix)
    return [
        ("CW-RGP 4 loss fwd+bwd (bs 256, 4 views, d 512, w_size 64, 4 groups)", 4, 512, 64, cw),
        ("CW-RGP 2 loss fwd+bwd (bs 256, 2 views, d 512, w_size 64, 4 groups)", 2, 512, 64, cw),
        ("W-MSE 4 loss fwd+bwd (bs 256, 4 views, d 64, w_size 128, BW Cholesky)", 4, 64, 128, bw),
    ]


def bench_loss():
    """Whole-loss forward + backward on `h = randn(views·256, d)` with
    gradient: median of 10 after 2 warm-ups, in ms. Then each case's peak
    memory growth, measured in a fresh process (see `peak_memory_of`)."""
    for i, (label, views, d, w_size, whitening) in enumerate(loss_cases()):
        h = torch.randn(views * LOSS_BS, d, requires_grad=True)
        t = median_seconds(lambda: release_whitening_loss(h, views, whitening, w_size).backward(), 10)
        print(f"peer | {label} | ms | {t * 1e3:.2f}", flush=True)
        out = subprocess.run([sys.executable, __file__, "loss", "--peak-memory-of", str(i),
                              "--threads", str(torch.get_num_threads())], capture_output=True, text=True)
        if out.returncode == 0:
            print(out.stdout, end="", flush=True)
        else:
            print(f"peer memory run of case {i} failed: {out.stderr.strip()}", file=sys.stderr)


def proc_status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory_of(i):
    """Growth of the resident set over one forward + backward of loss case
    `i`, as our example measures it: glibc made to return every freed block
    of 64 KiB or more at once (so the resident set follows the live
    allocations), one warm-up pass, then `VmHWM` after `clear_refs` reset it."""
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3
    if not (libc.mallopt(m_mmap_threshold, 64 << 10) == 1
            and libc.mallopt(m_trim_threshold, 64 << 10) == 1):
        raise SystemExit("cannot make glibc return freed memory: no measurement")
    label, views, d, w_size, whitening = loss_cases()[i]
    h = torch.randn(views * LOSS_BS, d, requires_grad=True)
    release_whitening_loss(h, views, whitening, w_size).backward()
    before = proc_status_kib("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    release_whitening_loss(h, views, whitening, w_size).backward()
    peak = proc_status_kib("VmHWM:")
    input_mib = views * LOSS_BS * d * 4 / (1 << 20)
    label = label.replace(" fwd+bwd", " peak memory growth").replace(")", f"; input {input_mib:.1f} MiB)")
    print(f"peer | {label} | MiB | {max(peak - before, 0) / 1024:.1f}")


# ------------------------------------------------------------------ step --


def bench_step(bs=64, views=2):
    """One CW-RGP training iteration of base/train.py on CIFAR-10 inputs:
    `get_model("resnet18", "cifar10")` (base/model.py: torchvision ResNet-18,
    zero-init residuals, 3×3 stem, no max-pool, no fc, in `nn.DataParallel`,
    a pass-through without GPUs), `get_head` with cfg.py's defaults
    (512 → 1024 BN ReLU → 512), Adam(lr 3e-3, weight decay 1e-6) over all
    parameters, the warm-up learning-rate write, `zero_grad`, the
    `CW_RGP.forward` of base/methods/cwrgp.py (one encoder pass per view,
    the head on their concatenation, 4 groups, w_size 64), `backward`,
    `step`, and `loss.item()`. Fixed random 32×32 inputs (no data loading,
    as our side); median of 5 after 1 warm-up, in images per second."""
    import torchvision

    encoder = torchvision.models.resnet18(weights=None, zero_init_residual=True)
    encoder.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    encoder.maxpool = nn.Identity()
    out_size = encoder.fc.in_features
    encoder.fc = nn.Identity()
    encoder = nn.DataParallel(encoder)
    head = nn.Sequential(nn.Linear(out_size, 1024), nn.BatchNorm1d(1024), nn.ReLU(), nn.Linear(1024, 512))
    method = nn.ModuleDict({"model": encoder, "head": head}).train()
    lr, warmup_iters = 3e-3, 500
    optimizer = torch.optim.Adam(method.parameters(), lr=lr, weight_decay=1e-6)
    whitening = ReleaseWhitening(axis=0, group=4, whiten_matrix=zca_matrix)
    samples = [torch.randn(bs, 3, 32, 32) for _ in range(views)]
    step_no = [0]

    def step():
        scale = (step_no[0] + 1) / warmup_iters if step_no[0] < warmup_iters else 1.0
        for group in optimizer.param_groups:
            group["lr"] = lr * scale
        optimizer.zero_grad()
        h = head(torch.cat([encoder(x) for x in samples]))
        loss = release_whitening_loss(h, views, whitening, min(64, bs))
        loss.backward()
        optimizer.step()
        loss.item()
        step_no[0] += 1

    t = median_seconds(step, 5, warm=1)
    print(f"peer | ResNet-18 CW-RGP train step, bs {bs} x {views} views (fwd+bwd+Adam) | images/s | {bs / t:.1f}")


# ------------------------------------------------------------------ eval --


def bench_eval(n_train=50000, n_test=10000, dim=512, classes=10, epochs=500):
    """`BaseMethod.get_acc`'s two classifiers on given features:
    `eval_knn` (base/eval/knn.py: `cdist`, `topk`, a Python loop of
    `unique` majority votes) and `eval_sgd` (base/eval/sgd.py: a linear
    layer, Adam lr 1e-2 wd 5e-6, exponential decay to 1e-6 over `epochs`,
    batches of 1000, top-1 and top-5 by `topk`). Features: 10 Gaussian
    clusters, `x = centre[y] + 2·N(0, I)`, as our `bench_eval`. Seconds
    each, then the process's peak resident memory."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(classes, dim, generator=g)
    y_train = torch.randint(0, classes, (n_train,), generator=g)
    y_test = torch.randint(0, classes, (n_test,), generator=g)
    x_train = centres[y_train] + 2.0 * torch.randn(n_train, dim, generator=g)
    x_test = centres[y_test] + 2.0 * torch.randn(n_test, dim, generator=g)

    start = time.perf_counter()
    dist = torch.cdist(x_test, x_train)
    nearest = torch.topk(dist, k=5, dim=1, largest=False)
    votes = y_train[nearest.indices]
    pred = torch.empty_like(y_test)
    for i in range(len(votes)):
        values, counts = votes[i].unique(return_counts=True)
        pred[i] = values[counts.argmax()]
    acc = (pred == y_test).float().mean().item()
    del dist, nearest, votes, pred
    print(f"peer | 5-NN, {n_train} x {dim} train, {n_test} test (acc {acc:.3f}) | s | "
          f"{time.perf_counter() - start:.2f}", flush=True)

    start = time.perf_counter()
    lr_start, lr_end = 1e-2, 1e-6
    num_class = y_train.max().item() + 1
    clf = nn.Linear(dim, num_class).train()
    optimizer = torch.optim.Adam(clf.parameters(), lr=lr_start, weight_decay=5e-6)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=(lr_end / lr_start) ** (1 / epochs))
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for idx in torch.randperm(len(x_train)).view(-1, 1000):
            optimizer.zero_grad()
            criterion(clf(x_train[idx]), y_train[idx]).backward()
            optimizer.step()
        scheduler.step()
    clf.eval()
    with torch.no_grad():
        top = clf(x_test).topk(5, 1, largest=True, sorted=True).indices
    acc = {k: (top[:, :k] == y_test[..., None]).float().sum(1).mean().item() for k in (1, 5)}
    print(f"peer | linear probe, {epochs} epochs (acc {acc[1]:.3f}) | s | {time.perf_counter() - start:.2f}")
    print(f"peer | peak resident memory of the process (VmHWM) | MiB | {proc_status_kib('VmHWM:') / 1024:.0f}")


# ------------------------------------------------------------------- aug --

# Image counts and batch sizes of our `bench_data` example.
CIFAR_IMAGES, STL10_TRAIN, STL10_UNLABELED, IMAGENET_IMAGES = 4096, 512, 512, 256
STL10_SIDE = 96


def small_recipe(crop, mean, std):
    """`aug_transform(crop, base_transform, cfg)` of base/datasets/transforms.py
    with cfg.py's defaults: colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8,
    grayscale p 0.1, random resized crop (scale 0.2–1, ratio 3/4–4/3,
    interpolation 3 = bicubic), flip p 0.5, then the dataset's
    `base_transform` (to tensor, normalise)."""
    import torchvision.transforms as T

    return T.Compose([
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.1),
        T.RandomResizedCrop(crop, scale=(0.2, 1.0), ratio=(0.75, 4 / 3), interpolation=3),
        T.RandomHorizontalFlip(p=0.5),
        T.Compose([T.ToTensor(), T.Normalize(mean, std)]),
    ])


class PilGaussianBlur:
    """ImageNet/transform.py's `GaussianBlur`: PIL's Gaussian filter with a
    radius drawn uniformly from [0.1, 2] by Python's `random`."""

    def __init__(self, sigma=(0.1, 2.0)):
        self.sigma = sigma

    def __call__(self, img):
        from PIL import ImageFilter

        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.sigma[0], self.sigma[1])))


def imagenet_recipe():
    """The `augmentation` list of ImageNet/train.py: random resized crop 224
    (scale 0.2–1, torchvision's bilinear default), colour jitter p 0.8,
    grayscale p 0.2, the PIL blur p 0.5, flip, to tensor, ImageNet
    normalisation."""
    import torchvision.transforms as T

    return T.Compose([
        T.RandomResizedCrop(224, scale=(0.2, 1.0)),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2),
        T.RandomApply([PilGaussianBlur([0.1, 2.0])], p=0.5),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


class MultiSample:
    """`MultiSample` of base/datasets/transforms.py and ImageNet/transform.py:
    `n` independent augmentations of one decoded image."""

    def __init__(self, transform, n=2):
        self.transform, self.n = transform, n

    def __call__(self, img):
        return tuple(self.transform(img) for _ in range(self.n))


def release_loader(dataset, batch_size, workers):
    """`BaseDataset.train` (base/datasets/base.py) and ImageNet/train.py's
    `train_loader`: shuffled, `drop_last`, `workers` worker processes
    (`pin_memory` only where there is a GPU to pin for)."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), drop_last=True)


def images_per_second(dataset, batch_size, workers, epochs):
    """Median images per second over `epochs` epochs after one warm-up
    epoch; every epoch iterates the loader afresh (new worker processes), as
    the release's training loop does. `workers == 0` is one core: the main
    process loads, and torch is held to one thread meanwhile."""
    threads = torch.get_num_threads()
    if workers == 0:
        torch.set_num_threads(1)
    try:
        loader = release_loader(dataset, batch_size, workers)
        rates = []
        for epoch in range(epochs + 1):
            start = time.perf_counter()
            n = sum(views[0].shape[0] for views, _ in loader)
            if epoch > 0:
                rates.append(n / (time.perf_counter() - start))
        return upper_median(rates)
    finally:
        torch.set_num_threads(threads)


def write_stl10_files(root):
    """STL-10's binary layout (`stl10_binary/train_X.bin`, `train_y.bin`,
    `unlabeled_X.bin`: uint8 96×96×3 images as column-major planes, labels
    1..10) with random pixels; our `bench_data` writes the same layout."""
    rng = np.random.default_rng(1)
    folder = os.path.join(root, "stl10_binary")
    os.makedirs(folder, exist_ok=True)
    image_bytes = 3 * STL10_SIDE * STL10_SIDE
    rng.integers(0, 256, STL10_TRAIN * image_bytes, dtype=np.uint8).tofile(os.path.join(folder, "train_X.bin"))
    rng.integers(1, 11, STL10_TRAIN, dtype=np.uint8).tofile(os.path.join(folder, "train_y.bin"))
    rng.integers(0, 256, STL10_UNLABELED * image_bytes, dtype=np.uint8).tofile(
        os.path.join(folder, "unlabeled_X.bin"))


def write_imagenet_files(root):
    """`imagenet/n00000000/{i}.JPEG`: 500×375 JPEGs at quality 90, smooth
    random scenes (drawn at 125×94 and upscaled bicubically) so that they
    compress like photographs rather than noise, as our `bench_data`'s."""
    from PIL import Image

    rng = np.random.default_rng(3)
    folder = os.path.join(root, "imagenet", "n00000000")
    os.makedirs(folder, exist_ok=True)
    for i in range(IMAGENET_IMAGES):
        small = Image.fromarray(rng.integers(0, 256, (94, 125, 3), dtype=np.uint8))
        small.resize((500, 375), Image.BICUBIC).save(os.path.join(folder, f"{i}.JPEG"), quality=90)


def stl10_dataset(root, transform):
    """torchvision's `STL10(split="train+unlabeled")`, as base/datasets/stl10.py
    builds it; the MD5 check of the real files (its `download=True`) is
    skipped, since these files are the benchmark's own."""
    from torchvision.datasets import STL10

    class BenchSTL10(STL10):
        def _check_integrity(self):
            return True

    return BenchSTL10(root=root, split="train+unlabeled", transform=transform)


def cifar10_dataset(images, transform):
    """torchvision's `CIFAR10` (as base/datasets/cifar10.py builds it), its
    `__getitem__` over images held in memory as its pickled batches are."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.vision import VisionDataset

    class BenchCIFAR10(CIFAR10):
        def __init__(self):
            VisionDataset.__init__(self, root=None, transform=transform)
            self.train = True
            self.data = images
            self.targets = [0] * len(images)

    return BenchCIFAR10()


def bench_aug(data_dir=None, views=2):
    """The training data pipelines: CIFAR-10 (base/datasets/cifar10.py:
    torchvision CIFAR10, 32 crops, `DataLoader` of 256 with 2 workers),
    STL-10 (base/datasets/stl10.py: torchvision STL10 read from the binary
    files, 96 → 64 crops, batches of 256) and ImageNet (ImageNet/train.py:
    torchvision ImageFolder decoding JPEGs with PIL, 224 crops, the PIL blur,
    batches of 64), each with 2 views (`MultiSample`); STL-10 and ImageNet on
    one core (no worker processes, one torch thread) and with a `DataLoader`
    of 2 workers. Images per second."""
    from torchvision.datasets import ImageFolder

    owned = None
    if data_dir is None:
        owned = tempfile.TemporaryDirectory(prefix="torch_peer_")
        data_dir = owned.name
    if not os.path.isdir(os.path.join(data_dir, "stl10_binary")):
        write_stl10_files(data_dir)
    if not os.path.isdir(os.path.join(data_dir, "imagenet")):
        write_imagenet_files(data_dir)

    cifar_images = np.random.default_rng(0).integers(0, 256, size=(CIFAR_IMAGES, 32, 32, 3), dtype=np.uint8)
    cifar = cifar10_dataset(cifar_images, MultiSample(
        small_recipe(32, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)), views))
    v = images_per_second(cifar, 256, 2, 3)
    print(f"peer | CIFAR augmentation, {views} views, DataLoader with 2 workers | images/s | {v:.0f}", flush=True)

    stl = stl10_dataset(data_dir, MultiSample(small_recipe(64, (0.43, 0.42, 0.39), (0.27, 0.26, 0.27)), views))
    for workers, how in ((0, "per core"), (2, "DataLoader with 2 workers")):
        v = images_per_second(stl, 256, workers, 3)
        print(f"peer | STL-10 augmentation 96->64, {views} views, {how} | images/s | {v:.0f}", flush=True)

    imagenet = ImageFolder(os.path.join(data_dir, "imagenet"), MultiSample(imagenet_recipe(), views))
    for workers, how in ((0, "per core"), (2, "DataLoader with 2 workers")):
        v = images_per_second(imagenet, 64, workers, 3)
        print(f"peer | ImageNet augmentation (JPEG 500x375 decode, 224 crop, jitter, blur), {views} views, "
              f"{how} | images/s | {v:.0f}", flush=True)
    if owned is not None:
        owned.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="?", default="all", choices=["loss", "aug", "step", "eval", "all"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--data", default=None, help="folder with the files our bench_data wrote (aug)")
    parser.add_argument("--peak-memory-of", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    random.seed(0)
    if args.peak_memory_of is not None:
        peak_memory_of(args.peak_memory_of)
        return
    print(f"peer | torch {torch.__version__}, {torch.get_num_threads()} threads | - | -", flush=True)
    if args.what in ("loss", "all"):
        bench_loss()
    if args.what in ("aug", "all"):
        bench_aug(args.data)
    if args.what in ("step", "all"):
        bench_step()
    if args.what in ("eval", "all"):
        bench_eval()


if __name__ == "__main__":
    main()
