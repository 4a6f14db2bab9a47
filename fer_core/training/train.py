"""Training: `python -m fer_core train --model NAME --data PATH [--epochs N ...]`.

The whole split sits in memory as uint8 and is augmented batch-wise on the training device.
Every epoch ends with a val pass and two checkpoints written atomically: last.pt (everything
needed by --resume) and best.pt (the best val accuracy so far). Each epoch draws its shuffle and
augmentation from a generator seeded by (seed, epoch), so a killed and resumed run follows the
same path as an uninterrupted one. At the end the best weights are exported with their card (with
`--export last`, the final ones: no epoch is chosen by looking at the val sets the card then reports).

Distillation: `--teacher NAME` runs a shipped model or ensemble on every augmented batch beside the
student, and the loss mixes the labels' cross-entropy with the KL divergence from the teacher's
softened outputs (`--kd-alpha`, `--kd-temperature`); the default model was trained this way.
With `--kd-cache` the teacher runs once instead, on the unaugmented training faces (mean of face and
mirror), its outputs are kept in the run folder, and every augmented view of a face is distilled
towards them: a seven-VGG13 ensemble then runs once (18 minutes on two CPU cores) instead of every epoch.

Recipe options: `--ema DECAY` keeps an exponential moving average of the weights and evaluates,
checkpoints and exports that average instead; `--mixup ALPHA` / `--cutmix ALPHA` mix the faces of
each augmented batch (and their labels in the loss). `--swa-epochs K --swa-lr LR` ends the run with K
epochs at a constant LR whose end-of-epoch weights are averaged (see swa.py); `--init NAME` starts
from a shipped model's weights instead of random ones, so a trained model can be averaged further, or
a narrower VGG-style one can start from a wider one's strongest channels (thin.py).

Several GPUs or nodes: launch the same command through PyTorch's `torchrun`
(`torchrun --nproc-per-node 8 -m fer_core train --model vgg13 ...`). Each process then trains on
its share of every batch under DistributedDataParallel (NCCL on GPUs, gloo on CPUs), and rank 0
alone evaluates, writes checkpoints and exports. `--batch-size` stays the global batch.
"""
import contextlib
import json
from dataclasses import dataclass
import logging
import math
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..atomic import write_atomic, write_text_atomic
from ..data.capture import degrade
from ..data.emotions import EMOTIONS
from ..data.fer2013 import FER2013, open_dataset
from ..data.preprocess import faces_to_tensor
from ..errors import FerError
from ..models import card_schema, cards, thin
from ..models.evaluate import predict_logits
from ..models.measure import measure_card
from ..models.registry import count_params, create_model, for_inference
from ..models.speed import cpu_name
from .augment import ROTATE, SHIFT, ZOOM, augment, mix
from .ema import WeightEMA
from .mixing import BALANCE, TrainSet
from .swa import WeightSWA

log = logging.getLogger(__name__)

EXPORTS = ("best", "last")  # which weights `--export` writes


def add_arguments(p):
    p.add_argument("--model", required=True, help="architecture from the registry (see `models`)")
    p.add_argument("--data", help="FER2013 .zip, folder or .csv (default: env FER2013_PATH)")
    p.add_argument("--name", help="name of the exported model (default: the architecture)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--opt", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: sgd 0.05, adamw 2e-3)")
    p.add_argument("--weight-decay", type=float, default=None, help="default: sgd 5e-4, adamw 0.05")
    p.add_argument("--schedule", choices=["cosine", "onecycle"], default="cosine")
    p.add_argument("--warmup", type=float, default=2, help="warm-up epochs before cosine decay")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--amp", choices=["auto", "on", "off"], default="auto",
                   help="bf16 autocast; auto: on for CUDA, and on the CPU only where it has native bf16")
    p.add_argument("--pretrained", action="store_true", help="start from ImageNet weights in the torch cache")
    p.add_argument("--out", help="run folder for checkpoints and history (default: runs/NAME)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt if it exists")
    p.add_argument("--weights-dir", help="where to export NAME.pt/.json (default: weights/)")
    p.add_argument("--no-export", action="store_true", help="keep the result in the run folder only")
    p.add_argument("--export", choices=EXPORTS, default="best",
                   help="weights to export: best, the epoch with the best mean val accuracy; last, the final "
                        "epoch's (its EMA or SWA average if any), chosen without looking at val")
    p.add_argument("--default", action="store_true", help="mark the exported model as the app's default")
    p.add_argument("--teacher", help="shipped model (or ensemble) to distil: its softened outputs on each "
                                     "augmented batch join the loss")
    p.add_argument("--kd-alpha", type=float, default=0.7, help="weight of the distillation term (rest: labels)")
    p.add_argument("--kd-temperature", type=float, default=2.0, help="softening of student and teacher outputs")
    p.add_argument("--kd-cache", action="store_true",
                   help="run the teacher once on the unaugmented training faces (with their mirror) and distil "
                        "every augmented view towards those outputs, kept in OUT/teacher_logits.pt")
    p.add_argument("--ema", type=float, default=0.0,
                   help="decay of a moving average of the weights (e.g. 0.999), used for val and export; 0: off")
    p.add_argument("--swa-epochs", type=int, default=0,
                   help="average the weights of the last K epochs, run at the constant --swa-lr; 0: off")
    p.add_argument("--swa-lr", type=float, default=None, help="learning rate of the SWA epochs (default: peak / 5)")
    p.add_argument("--init", help="shipped model whose weights the run starts from: the same architecture, or a "
                                  "wider VGG-style one whose strongest channels are kept (thin.py)")
    p.add_argument("--aug-shift", type=float, default=SHIFT, help=f"largest shift of a face, px (default {SHIFT})")
    p.add_argument("--aug-zoom", type=float, default=ZOOM,
                   help=f"largest zoom in or out, as a share of the scale (default {ZOOM})")
    p.add_argument("--aug-rotate", type=float, default=ROTATE,
                   help=f"largest in-plane rotation, degrees either way (default {ROTATE}; real photos: 25)")
    for kind, what in CAPTURE_HELP.items():
        p.add_argument(f"--aug-{kind}", type=float, default=0.0, help=f"share of faces given {what}; 0: off")
    p.add_argument("--mixup", type=float, default=0.0, help="Beta(a, a) of Mixup across each batch; 0: off")
    p.add_argument("--cutmix", type=float, default=0.0,
                   help="Beta(a, a) of CutMix across each batch; 0: off (both on: one or the other per batch)")
    p.add_argument("--extra-data", help="a real-photo set (folder or .zip, see `evaluate --data`) whose train split "
                                        "joins FER2013's and whose val split is a second val set")
    p.add_argument("--extra-share", type=float, default=0.25, help="share of each epoch drawn from --extra-data")
    p.add_argument("--extra-balance", choices=BALANCE, default="sqrt",
                   help="how --extra-data's classes are drawn: sqrt of their counts (default) or as they are")


CAPTURE_HELP = {"blur": "Gaussian blur", "lowres": "low resolution (downscale, then upscale)",
                "jpeg": "JPEG artefacts", "light": "other gamma, contrast and brightness",
                "noise": "sensor noise", "occlude": "an occluding rectangle"}


def check_args(args):
    """Raise FerError on options that cannot go together or are out of range (before anything is loaded)."""
    if not 0 <= args.ema < 1 or args.mixup < 0 or args.cutmix < 0:
        raise FerError("--ema takes a decay in [0, 1) (0: off); --mixup and --cutmix take an alpha >= 0 (0: off)")
    if args.aug_shift < 0 or not 0 <= args.aug_zoom < 1 or not 0 <= args.aug_rotate <= 180:
        raise FerError("--aug-shift takes pixels >= 0, --aug-zoom a share in [0, 1) and --aug-rotate 0-180 degrees")
    bad = [k for k in CAPTURE_HELP if not 0 <= getattr(args, f"aug_{k}") <= 1]
    if bad:
        raise FerError(f"--aug-{bad[0]} takes the share of faces to change, in [0, 1]")
    if args.kd_cache and not args.teacher:
        raise FerError("--kd-cache keeps a teacher's outputs: name the teacher with --teacher")
    if not 0 <= args.swa_epochs <= args.epochs or (args.swa_lr is not None and args.swa_lr <= 0):
        raise FerError(f"--swa-epochs takes 0 to --epochs ({args.epochs}) epochs and --swa-lr a rate > 0")
    if args.swa_epochs and args.ema:
        raise FerError("--swa-epochs and --ema both average the weights: choose one")
    if args.extra_data and not 0 < args.extra_share < 1:
        raise FerError("--extra-share takes the share of each epoch drawn from --extra-data, in (0, 1)")


def capture_probs(args) -> dict:
    return {k: getattr(args, f"aug_{k}") for k in CAPTURE_HELP if getattr(args, f"aug_{k}")}


@dataclass
class Run:
    """What every training step and epoch end needs, in one place instead of a dozen arguments."""
    args: object
    model: torch.nn.Module  # the weights being trained (unwrapped)
    net: torch.nn.Module  # what the forward pass calls: the model, or its DDP wrapper
    opt: object
    sched: object
    device: torch.device
    amp: bool
    train: TrainSet
    vals: dict  # dataset key -> data.Split of its val split
    out: Path
    state: dict
    rank: int = 0
    world: int = 1
    teacher: object = None  # a model, a tensor of cached logits, or None
    ema: object = None
    swa: object = None


def pick_device(name="auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # one GPU per torchrun process
    return device


def start_distributed(device):
    """(rank, world size) of this process; under torchrun (WORLD_SIZE > 1) it joins the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


def _barrier(world):
    if world > 1:
        dist.barrier()


def _save_atomic(obj, path: Path):
    write_atomic(path, lambda p: torch.save(obj, p))


def peak_lr(args) -> float:
    return args.lr or (0.05 if args.opt == "sgd" else 2e-3)


def swa_lr(args) -> float:
    return args.swa_lr or peak_lr(args) / 5


def _lr_lambda(args, steps_per_epoch):
    """Warm-up, then cosine decay to zero by the start of the SWA epochs, which hold --swa-lr."""
    total, warm = (args.epochs - args.swa_epochs) * steps_per_epoch, int(args.warmup * steps_per_epoch)
    swa_factor = swa_lr(args) / peak_lr(args)

    def factor(step):
        if args.swa_epochs and step >= total:
            return swa_factor
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    return factor


def _optimizer_and_schedule(model, args, steps_per_epoch):
    lr = peak_lr(args)
    wd = args.weight_decay if args.weight_decay is not None else (5e-4 if args.opt == "sgd" else 0.05)
    if args.opt == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    if args.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=args.epochs * steps_per_epoch)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(args, steps_per_epoch))
    return opt, sched


def use_amp(device, choice="auto") -> bool:
    """bf16 autocast pays on GPUs and on CPUs with native bf16 (AVX512-BF16/AMX); on an AVX2-only
    CPU it is emulated and measured here 10-15x slower than fp32, so auto leaves it off there."""
    if choice != "auto":
        return choice == "on"
    return device.type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def _autocast(device, enabled):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def load_teacher(name, device, directory=None):
    """A shipped model (or ensemble) in inference form for distillation, with its card."""
    teacher, card = cards.load_model(name, directory, device)
    return for_inference(teacher), card  # folds an ensemble's members too, as EmotionRecognizer does


def soft_targets(teacher_logits, temperature):
    """The teacher's probabilities softened by `temperature`: what the student is distilled towards."""
    return F.softmax(teacher_logits.float() / temperature, dim=1)


def distillation_loss(logits, targets, temperature, reduction="batchmean"):
    """KL divergence of the softened student from the teacher's softened probabilities `targets`, scaled
    by T^2 (Hinton et al.) so that its gradients keep their size whatever the temperature; "none": per face."""
    t = temperature
    kl = F.kl_div(F.log_softmax(logits / t, dim=1), targets, reduction="none").sum(1) * t * t
    return kl.mean() if reduction == "batchmean" else kl


def cached_teacher_logits(teacher, teacher_state, data, images, out: Path, device, rank=0, world=1):
    """The teacher's logits on every unaugmented training face (mean of face and mirror), computed once by
    rank 0 and kept in OUT/teacher_logits.pt; a file made by other teacher weights or data is recomputed."""
    key = {"teacher": teacher_state["name"], "sha256": teacher_state["sha256"], "data": data.fingerprint()}
    path = out / "teacher_logits.pt"
    saved = torch.load(path, map_location="cpu", weights_only=True) if rank == 0 and path.exists() else None
    if rank == 0 and (saved is None or saved["key"] != key):
        t0 = time.time()
        print(f"teacher {key['teacher']}: outputs on {len(images)} training faces ...", flush=True)
        saved = {"key": key, "logits": torch.from_numpy(predict_logits(teacher, images, device, tta="flip"))}
        _save_atomic(saved, path)
        print(f"teacher outputs kept in {path} ({time.time() - t0:.0f}s)", flush=True)
    _barrier(world)
    if rank:
        saved = torch.load(path, map_location="cpu", weights_only=True)  # written by rank 0
    return saved["logits"].to(device)


def start_from(model, args) -> dict:
    """Load the weights of the shipped model `args.init` into `model`; what the card records of it."""
    source, card = cards.load_model(args.init, args.weights_dir)
    record = {"name": card["name"], "sha256": card["sha256"], "val_accuracy": cards.val_accuracy(card)}
    if card["arch"] == args.model:
        model.load_state_dict(source.state_dict())
        return record
    why = thin.problem(source, model)
    if why:
        raise FerError(f"--init {args.init} is a {card['arch']}, which {args.model} cannot start from: {why}")
    thin.thin(source.float(), model)  # a narrower model keeps the source's strongest channels
    return {**record, "thinned_from": card["arch"]}


def recipe_command(argv) -> str:
    kept = [a for a in argv if a != "--resume"]
    return "python -m fer_core " + shlex.join(kept)


def label_loss(logits, y, partner, lam, label_smoothing, reduction="mean"):
    """Cross-entropy with the labels; for a mixed batch, lam of it with y and the rest with y[partner]."""
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing, reduction=reduction)
    if partner is None:
        return loss
    return lam * loss + (1 - lam) * F.cross_entropy(logits, y[partner], label_smoothing=label_smoothing,
                                                    reduction=reduction)


def train_one_epoch(run: Run, epoch: int):
    """One epoch over `run.train`'s faces; under torchrun each rank takes every world-th face of each
    global batch. With a teacher the loss mixes the labels' cross-entropy with distillation on the
    FER2013 faces (a teacher read on real photos would teach its own mistakes there): a live teacher
    sees each face's augmented view before the capture corruptions, so the student learns to read a
    blurred or dark face as the teacher reads the clean one; cached logits (--kd-cache) hold one row per
    face. With an EMA the average follows every step.
    Returns (mean loss, accuracy against the unmixed labels) over all ranks."""
    args, device, data, rank, world = run.args, run.device, run.train, run.rank, run.world
    run.net.train()
    seed = args.seed * 100_003 + epoch
    g = torch.Generator().manual_seed(seed)
    order = data.epoch_order(g)  # the same order on every rank
    if rank:
        g.manual_seed(seed + 7919 * rank)  # but each rank its own augmentation draws
    torch.manual_seed(seed + 7919 * rank)  # dropout
    steps = len(order) // args.batch_size  # drop the ragged last batch (BatchNorm dislikes size 1)
    total_loss = correct = seen = 0
    bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, dynamic_ncols=True,
               disable=None if rank == 0 else True)
    for i in bar:
        idx = order[i * args.batch_size:(i + 1) * args.batch_size][rank::world]
        x, clean = _augmented_batch(run, idx, g)
        y, partner, lam = data.labels[idx].to(device), None, 1.0
        if args.mixup or args.cutmix:
            x, partner, lam = mix(x, g, args.mixup, args.cutmix)
        with _autocast(device, run.amp):
            logits = run.net(x)
        loss = label_loss(logits.float(), y, partner, lam, args.label_smoothing, reduction="none")
        if run.teacher is not None:  # where the teacher speaks it takes kd_alpha of the loss; elsewhere labels
            kd, weight = _kd_term(run, logits, x, clean, idx, partner, lam)
            loss = (1 - weight) * loss + weight * kd
        loss = loss.mean()
        run.opt.zero_grad(set_to_none=True)
        loss.backward()
        run.opt.step()
        run.sched.step()
        if run.ema is not None:
            run.ema.update(run.model)
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(1) == y).sum().item()
        seen += len(y)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    if world > 1:
        sums = torch.tensor([total_loss, correct, seen], dtype=torch.float64, device=device)
        dist.all_reduce(sums)
        total_loss, correct, seen = sums.tolist()
    return total_loss / max(seen, 1), correct / max(seen, 1)


def _augmented_batch(run: Run, idx, g):
    """(the batch the student sees, the same faces with the same warp but no capture corruption, or None
    when no corruption is on). Clean and corrupted faces ride as two channels through one warp."""
    args = run.args
    faces = run.train.images[idx]
    probs = capture_probs(args)
    if not probs:
        x = augment(faces_to_tensor(faces, run.device), g, args.aug_shift, args.aug_zoom, args.aug_rotate)
        return x.contiguous(memory_format=torch.channels_last), None
    both = torch.stack([faces_to_tensor(faces.cpu(), run.device)[:, 0],
                        faces_to_tensor(degrade(faces.cpu(), g, probs), run.device)[:, 0]], 1)
    both = augment(both, g, args.aug_shift, args.aug_zoom, args.aug_rotate)
    x, clean = both[:, 1:2], both[:, 0:1]
    return x.contiguous(memory_format=torch.channels_last), clean.contiguous(memory_format=torch.channels_last)


def _kd_term(run: Run, logits, x, clean, idx, partner, lam):
    """(distillation loss per face, its weight per face): kd_alpha on FER2013's faces, 0 on real photos, whose
    labels alone then teach them. A live teacher reads the clean view of an unmixed batch, else what the
    student read."""
    args = run.args
    keep = ~run.train.from_extra(idx).to(logits.device)
    if partner is not None:
        keep = keep & keep[partner]
    weight = keep.float() * args.kd_alpha
    if not keep.any():
        return torch.zeros_like(weight), weight
    seen = clean if clean is not None and partner is None else x
    if partner is None and not isinstance(run.teacher, torch.Tensor):  # a live teacher reads only its rows
        rows = keep.nonzero().squeeze(1)
        targets = _teacher_targets(run.teacher, seen[rows], idx, None, lam, args.kd_temperature, run.device, run.amp)
        kd = torch.zeros_like(weight)
        kd[rows] = distillation_loss(logits[rows].float(), targets, args.kd_temperature, reduction="none")
        return kd, weight
    targets = _teacher_targets(run.teacher, seen, idx, partner, lam, args.kd_temperature, run.device, run.amp)
    return distillation_loss(logits.float(), targets, args.kd_temperature, reduction="none") * keep, weight


@torch.no_grad()
def _teacher_targets(teacher, x, idx, partner, lam, temperature, device, amp):
    """The teacher's softened probabilities for a batch: rows of cached logits (mixed like the faces), or
    a live teacher's outputs on `x`."""
    if isinstance(teacher, torch.Tensor):
        targets = soft_targets(teacher[idx.to(teacher.device)], temperature)
        return targets if partner is None else lam * targets + (1 - lam) * targets[partner]
    with _autocast(device, amp):
        return soft_targets(teacher(x), temperature)


def run(args, argv=None):
    argv = sys.argv[1:] if argv is None else argv
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    rank, world = start_distributed(device)
    if args.batch_size % world:
        raise FerError(f"--batch-size {args.batch_size} must divide evenly among {world} processes")
    name = args.name or args.model
    out = Path(args.out or Path("runs") / name)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = create_model(args.model, pretrained=args.pretrained)
    init = start_from(model, args) if args.init else None
    model = model.to(device, memory_format=torch.channels_last)
    datasets = _datasets(args)
    train_set = _train_set(args, datasets, device)
    opt, sched = _optimizer_and_schedule(model, args, train_set.epoch_size() // args.batch_size)
    state = {"epoch": 0, "best_acc": -1.0, "history": [], "recipe": recipe_command(argv), "wall_s": 0.0}
    if init:
        state["init"] = init
    if args.extra_data:
        state["extra_data"] = {"source": datasets[1].path.name, "share": args.extra_share,
                               "balance": args.extra_balance, "drawn_share": train_set.drawn_share()}
    last = out / "last.pt"
    ckpt = torch.load(last, map_location=device, weights_only=True) if args.resume and last.exists() else None
    if ckpt is not None:
        state = _resume(ckpt, model, opt, sched, argv)
        log.info("resumed %s at epoch %d (best val %.4f)", last, state["epoch"], state["best_acc"])
    ema = WeightEMA(model, args.ema) if args.ema else None  # a run resumed without one averages from here on
    if ema is not None and ckpt is not None and "ema" in ckpt:
        ema.load_state_dict(ckpt["ema"])
    if args.swa_epochs:  # a resumed run keeps its count of averaged epochs
        state["swa"] = {**state.get("swa", {}), "epochs": args.swa_epochs, "lr": swa_lr(args)}
    swa = WeightSWA(model) if args.swa_epochs and rank == 0 else None  # rank 0 alone evaluates and exports
    if swa is not None and ckpt is not None and "swa" in ckpt:
        swa.load_state_dict(ckpt["swa"])
    net = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    r = Run(args, model, net, opt, sched, device, use_amp(device, args.amp), train_set,
            {card_schema.dataset_key(d.path.name): d.load("val") for d in datasets}, out, state, rank, world,
            ema=ema, swa=swa)
    r.teacher = _teacher(r, datasets[0]) if args.teacher else None
    if rank == 0:
        _announce(r)
    for epoch in range(state["epoch"], args.epochs):
        t0 = time.time()
        result = train_one_epoch(r, epoch)
        if rank == 0:
            if swa is not None and epoch >= args.epochs - args.swa_epochs:
                swa.update(model, train_set.images[:train_set.n_primary], _autocast(device, r.amp))
                state["swa"]["averaged"] = swa.count
            end_epoch(r, epoch, result, time.time() - t0)
        _barrier(world)  # the others wait until rank 0 has written the checkpoint

    if not args.no_export and rank == 0:
        path = export(args, name, out, datasets, device, state)
        print(f"exported {path}", flush=True)
    _barrier(world)
    if world > 1:
        dist.destroy_process_group()
    return state


def _datasets(args) -> list:
    """FER2013, then the --extra-data photo set when given."""
    fer = open_dataset(args.data)
    if not isinstance(fer, FER2013):
        raise FerError(f"--data must be FER2013 (48x48 faces); {fer.path.name} holds photos: pass it as --extra-data")
    if not args.extra_data:
        return [fer]
    extra = open_dataset(args.extra_data)
    for split in ("train", "val"):
        if split not in extra.splits:
            raise FerError(f"--extra-data {extra.path.name} has no {split} split (it has: {', '.join(extra.splits)})")
    return [fer, extra]


def _train_set(args, datasets, device) -> TrainSet:
    extra = datasets[1].load("train") if len(datasets) > 1 else None
    data = TrainSet.build(datasets[0].load("train"), extra, args.extra_share, args.extra_balance)
    if device.type == "cuda":
        data.images, data.labels = data.images.to(device), data.labels.to(device)
    return data


def _resume(ckpt, model, opt, sched, argv) -> dict:
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    sched.load_state_dict(ckpt["sched"])
    state, recipe = ckpt["state"], recipe_command(argv)
    if state["recipe"] != recipe:  # e.g. a shorter --epochs: the card keeps what ran before
        state.setdefault("earlier_recipes", []).append({"recipe": state["recipe"], "until_epoch": state["epoch"]})
    state["recipe"] = recipe  # the last command sets the rest of the schedule
    return state


def _teacher(r: Run, fer):
    args = r.args
    teacher, teacher_card = load_teacher(args.teacher, r.device, args.weights_dir)
    r.state["teacher"] = {"name": teacher_card["name"], "sha256": teacher_card.get("sha256") or
                          [m["sha256"] for m in teacher_card.get("members", [])],
                          "val_accuracy": cards.val_accuracy(teacher_card),
                          "alpha": args.kd_alpha, "temperature": args.kd_temperature}
    if args.extra_data:
        r.state["teacher"]["faces"] = "FER2013's only (real photos learn from their labels)"
    if args.kd_cache:
        r.state["teacher"]["targets"] = "unaugmented training faces, mean of face and mirror (--kd-cache)"
        fer_faces = r.train.images[:r.train.n_primary]
        logits = cached_teacher_logits(teacher, r.state["teacher"], fer, fer_faces, r.out, r.device, r.rank, r.world)
        return _pad_rows(logits, r.train.n_extra)  # real photos get no teacher: their rows are never read
    return teacher


def _pad_rows(logits, n):
    """`logits` with n rows of zeros after it, so that an index into the whole training set is valid."""
    return torch.cat([logits, logits.new_zeros(n, logits.shape[1])]) if n else logits


def _announce(r: Run):
    args = r.args
    extra = f" + {r.train.epoch_size() - r.train.n_primary} drawn from {args.extra_data}" if r.train.n_extra else ""
    print(f"training {args.model} ({count_params(r.model):,} params) on {r.device} (bf16: {r.amp}) for "
          f"{args.epochs} epochs; train {r.train.n_primary}{extra}, val "
          + ", ".join(f"{k} {len(v)}" for k, v in r.vals.items())
          + (f"; {r.world} processes" if r.world > 1 else "")
          + (f"; val and export use the weights' EMA ({args.ema})" if r.ema is not None else ""), flush=True)


def end_epoch(r: Run, epoch, train_result, seconds):
    """Val pass on every val set, history row, best.pt when the mean val accuracy improved, last.pt for
    --resume (all written atomically). With an EMA, or SWA once it holds weights, the averaged weights
    are the ones evaluated and kept as best.pt."""
    loss, acc = train_result
    kept = r.ema.model if r.ema is not None else r.model
    if r.swa is not None and r.swa.count:
        kept = r.swa.model
    row = {"epoch": epoch + 1, "train_loss": round(loss, 4), "train_acc": round(acc, 4)}
    accs = []
    for i, (key, val) in enumerate(r.vals.items()):
        logits = predict_logits(kept, val.images, r.device)
        prefix = "val" if i == 0 else f"{key}_val"
        row[f"{prefix}_loss"] = round(float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(val.labels))), 4)
        row[f"{prefix}_acc"] = round(float((logits.argmax(1) == val.labels).mean()), 4)
        accs.append(row[f"{prefix}_acc"])
    row.update(lr=round(r.sched.get_last_lr()[0], 6), seconds=round(seconds, 1))
    state = r.state
    state["history"].append(row)
    state["epoch"], state["wall_s"] = epoch + 1, state["wall_s"] + seconds
    score = sum(accs) / len(accs)  # with real photos: their val and FER2013's count alike
    if score > state["best_acc"]:
        state["best_acc"] = score
        _save_atomic(kept.state_dict(), r.out / "best.pt")
    checkpoint = {"model": r.model.state_dict(), "opt": r.opt.state_dict(), "sched": r.sched.state_dict(),
                  "state": state}
    if r.ema is not None:
        checkpoint["ema"] = r.ema.state_dict()
    if r.swa is not None:
        checkpoint["swa"] = r.swa.state_dict()
    _save_atomic(checkpoint, r.out / "last.pt")
    write_text_atomic(r.out / "history.json", json.dumps(state["history"], indent=1))
    print(f"epoch {epoch + 1}/{r.args.epochs}  loss {loss:.4f}  acc {acc:.4f}  "
          + "  ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith("_acc") and k != "train_acc")
          + f"  lr {r.sched.get_last_lr()[0]:.5f}  {seconds:.0f}s", flush=True)


def export(args, name, out: Path, datasets: list, device, state) -> Path:
    """Write the best (or last) epoch's weights (fp16) and their card, with metrics measured on those fp16
    weights."""
    model = create_model(args.model)
    model.load_state_dict(_exported_weights(out, args.export))
    card = {
        "schema_version": card_schema.SCHEMA_VERSION, "name": name, "arch": args.model, "arch_args": {},
        "labels": list(EMOTIONS), "params": count_params(model), "preprocess": dict(card_schema.PREPROCESS),
        "intended_use": card_schema.INTENDED_USE, "limitations": card_schema.LIMITATIONS,
        "recipe": card_schema.portable(state["recipe"]), "history": state["history"],
        "train_args": card_schema.portable_args({k: v for k, v in vars(args).items() if k not in {"func", "command"}}),
        "hardware": {"device": str(device), "name": _device_name(device), "torch": torch.__version__,
                     "python": platform.python_version()},
        "wall_time_s": round(state["wall_s"], 1), "bf16": use_amp(device, args.amp),
        "best_epoch": _best_epoch(state["history"]),
        "exported_epoch": _best_epoch(state["history"]) if args.export == "best" else state["epoch"],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "metrics": {}, "datasets": {},
    }
    if capture_probs(args) or args.aug_rotate != ROTATE:
        card["augment"] = {"rotate": args.aug_rotate, "shift": args.aug_shift, "zoom": args.aug_zoom,
                           "capture": capture_probs(args)}
    for key, field in (("teacher", "distilled_from"), ("init", "initialized_from"), ("swa", "swa"),
                       ("extra_data", "extra_data"), ("earlier_recipes", "earlier_recipes")):
        if state.get(key):
            card[field] = state[key]
    for row in card.get("earlier_recipes", []):
        row["recipe"] = card_schema.portable(row["recipe"])
    card_path = cards.save_weights(model, card, args.weights_dir, overflow_dir=out)
    card = cards.find_card(name, args.weights_dir)
    pt = out / f"{name}.pt" if card.get("not_shipped") else cards.weights_path(card, args.weights_dir)
    fp16_model = cards.load_file(pt, card).eval()  # measure the fp16 file
    cards.write_card(measure_card(card, fp16_model, datasets), args.weights_dir)
    if args.default:
        cards.set_default(name, args.weights_dir)
    return card_path


def _exported_weights(out: Path, which="best") -> dict:
    """best.pt, or the weights the last epoch evaluated: its SWA or EMA average when the run keeps one."""
    if which == "best":
        return torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    swa = last.get("swa") or {}
    if int(swa.get("n_averaged", 0)):
        return {k.removeprefix("module."): v for k, v in swa.items() if k.startswith("module.")}
    return last["ema"]["model"] if "ema" in last else last["model"]


def _best_epoch(history):
    """The epoch best.pt holds: the best mean over the val sets (FER2013's, and real photos' if any)."""
    def score(h):
        accs = [v for k, v in h.items() if k.endswith("val_acc")]
        return sum(accs) / len(accs)
    return max(history, key=score)["epoch"] if history else 0


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({torch.get_num_threads()} threads)"
