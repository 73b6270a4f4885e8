"""Train the failure-mode model on a snapshot.

    edgeops train --snapshot snap/ --out runs/2026-11 [--config training/configs/default.yaml] [--resume]
    edgeops train --snapshot snap/ --out runs/2026-11 --nproc 4        # DDP through torchrun, one GPU each

Read top to bottom: load the snapshot onto the device, build the model with the training split's
normalisation statistics and vocabularies inside it, then the loop. The loop has no per-sample Python: the
whole snapshot sits on the device as tensors and each step gathers a batch by index. AdamW with a linear
warmup and a cosine decay, early stopping on the validation loss, bf16 autocast on CUDA, torch.compile
behind a config switch.

Reproducible and resumable: one seed drives initialisation, batch order and dropout, and on CPU the same
config + snapshot + seed give identical weights. A checkpoint is written at the end of every epoch, and on
SIGTERM (runner preemption, workflow cancel) at the current step; ``--resume`` continues from it, and the
final weights equal those of a run that was never interrupted (CPU). Exit code 143 means "stopped by
SIGTERM, checkpoint saved".

The run folder: ``checkpoint/`` (latest), ``metrics.jsonl`` (one row per epoch), ``weights.safetensors``
(best epoch, buffers included), ``run.json`` (config, snapshot, thresholds tuned on the validation split,
test metrics, timing and GPU-hours), ``plots/*.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from tools.core.errors import EdgeopsError
from tools.core.fsutil import output_folder
from tools.core.git import git_commit
from tools.core.log import fields
from training.checkpoint import flatten_optimizer, load_checkpoint, save_checkpoint, unflatten_optimizer
from training.config import DataSpec, TrainingConfig, load_training_config
from training.interface import INPUT_NAMES, interface_hash
from training.model import (
    ID_INPUTS,
    FailureModeModel,
    SensorStatistics,
    count_parameters,
    id_capacities,
    in_batches,
    sensor_statistics,
)

__all__ = ["EXIT_PREEMPTED", "TrainingTensors", "load_snapshot", "main", "train", "train_step"]

log = logging.getLogger("edgeops.train")
EXIT_PREEMPTED = 143  # 128 + SIGTERM: stopped on request, checkpoint saved


@dataclass
class TrainingTensors:
    """A snapshot folder (training/snapshot.py writes it) loaded into tensors on the training device."""

    sensors: torch.Tensor  # (N, C, T) float32
    ids: dict[str, torch.Tensor]  # each (N,) int64, raw ids
    labels: torch.Tensor  # (N, L) float32 0/1
    split: torch.Tensor  # (N,) uint8: 0 train, 1 val, 2 test
    meta: dict[str, Any]  # snapshot.json

    def index(self, split: int) -> torch.Tensor:
        return torch.nonzero(self.split == split).squeeze(1)

    def take(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The model's inputs for ``rows``: sensors and the raw ids, in the model's argument order.

        ``index_select`` rather than ``tensor[rows]``: the same gather without advanced indexing's
        bookkeeping, about half the time for a batch on CPU.
        """
        return (self.sensors.index_select(0, rows), *(self.ids[n].index_select(0, rows) for n in ID_INPUTS))

    def feed(self, rows: torch.Tensor) -> dict[str, np.ndarray]:
        """The same inputs for ``rows`` as an ONNX Runtime feed, keyed by the graph's input names."""
        return {name: t.cpu().numpy() for name, t in zip(INPUT_NAMES, self.take(rows), strict=True)}


def load_snapshot(folder: Path, spec: DataSpec, device: torch.device) -> TrainingTensors:
    meta_path = folder / "snapshot.json"
    if not meta_path.is_file():
        raise EdgeopsError(
            f"{folder}: not a snapshot folder (no snapshot.json); make one with `edgeops snapshot`"
        )
    meta = json.loads(meta_path.read_text())
    iface = meta.get("interface", {})
    want = {"channels": list(spec.channels), "window": spec.window, "labels": list(spec.labels)}
    got = {k: iface.get(k) for k in want}
    if got != want:
        raise EdgeopsError(
            f"{folder}: the snapshot's data interface {got} does not match the training config's {want}"
        )
    t = load_file(str(folder / "tensors.safetensors"), device=str(device))
    return TrainingTensors(
        sensors=t["sensors"],
        ids={name: t[name] for name in ID_INPUTS},
        labels=t["labels"].to(torch.float32),
        split=t["split"],
        meta=meta,
    )


def training_statistics(snap: TrainingTensors, rows: torch.Tensor, cfg: TrainingConfig) -> SensorStatistics:
    """The normalisation statistics and context baselines of the training ``rows``, on the CPU."""
    return sensor_statistics(
        snap.sensors.index_select(0, rows).cpu(),
        {name: snap.ids[name].index_select(0, rows).cpu() for name in ID_INPUTS},
        snap.labels.index_select(0, rows).cpu(),
        snap.meta["vocabularies"],
        id_capacities(cfg),
    )


def _device(cfg: TrainingConfig, local_rank: int) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise EdgeopsError("device: cuda is configured but no CUDA GPU is available on this machine")
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _schedule(cfg: TrainingConfig, steps_per_epoch: int) -> Any:
    total = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def train_step(
    net: Callable[..., torch.Tensor], optim: torch.optim.Optimizer, snap: TrainingTensors,
    rows: torch.Tensor, *, grad_clip: float, amp: bool,
) -> torch.Tensor:  # fmt: skip
    """One optimiser step on the snapshot's ``rows``; returns the (undetached) loss. ``net`` may be the model,
    its DDP wrapper or its compiled form; gradients are clipped over the optimiser's parameters."""
    with torch.autocast(snap.sensors.device.type, dtype=torch.bfloat16, enabled=amp):
        logits = net(*snap.take(rows))
    loss = F.binary_cross_entropy_with_logits(logits.float(), snap.labels.index_select(0, rows))
    optim.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]
    if grad_clip > 0:
        params = [p for group in optim.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optim.step()
    return loss


@torch.inference_mode()
def _predict(
    model: torch.nn.Module, snap: TrainingTensors, idx: torch.Tensor, batch: int, amp: bool
) -> torch.Tensor:
    """Logits for rows ``idx``, in float32, batch by batch."""
    model.eval()

    def logits(rows: torch.Tensor) -> torch.Tensor:
        with torch.autocast(snap.sensors.device.type, dtype=torch.bfloat16, enabled=amp):
            out: torch.Tensor = model(*snap.take(rows))
        return out.float()

    out = in_batches(logits, idx, batch)
    return torch.cat(out) if out else torch.empty(0, snap.labels.shape[1], device=snap.sensors.device)


def _git_commit() -> str | None:
    """HEAD of the checkout the code runs from, with ``-dirty`` when it has uncommitted changes."""
    commit, dirty = git_commit(Path(__file__).parent)  # (None, False) without git or outside a checkout
    return f"{commit}-dirty" if commit and dirty else commit


def train(snapshot_dir: Path, cfg: TrainingConfig, out: Path, *, resume: bool = False) -> dict[str, Any]:
    """Train into ``out``; returns the content of ``run.json``. Raises SystemExit(143) when preempted."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(cfg, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    lead = rank == 0
    amp = device.type == "cuda" and cfg.bf16
    # Same config + snapshot + seed -> same weights on CPU (CUDA kernels are allowed their own order).
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True)
        # Deterministic mode also fills every new uninitialised tensor with NaN, a debugging aid against
        # kernels that read memory they never wrote; ours write every element, and the ~100 fills per
        # step cost 7% of a CPU step (torch.profiler, benchmarks/train.py).
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]

    ckpt_dir = out / "checkpoint"
    if not resume and ckpt_dir.exists():
        raise EdgeopsError(f"{out} already holds a run; pass --resume to continue it, or choose a new --out")
    if resume and not ckpt_dir.exists():
        raise EdgeopsError(f"{out}: no checkpoint to resume from (expected {ckpt_dir})")
    out.mkdir(parents=True, exist_ok=True)

    spec = cfg.data_spec()
    snap = load_snapshot(snapshot_dir, spec, device)
    train_idx, val_idx, test_idx = snap.index(0), snap.index(1), snap.index(2)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise EdgeopsError(f"{snapshot_dir}: the snapshot needs rows in both the train and val splits")

    # Normalisation statistics of the training split go inside the model.
    stats = training_statistics(snap, train_idx, cfg)

    torch.manual_seed(cfg.seed)
    model = FailureModeModel(cfg, snap.meta["vocabularies"], stats).to(device)
    n_params = count_parameters(model)
    if n_params > 1_000_000:
        raise EdgeopsError(
            f"the model has {n_params} parameters; the limit is 1,000,000 (shrink conv_channels)"
        )
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if device.type == "cuda" else None
        )
    step_fn = torch.compile(net) if cfg.compile else net

    # The fused kernel (CPU and CUDA) updates every parameter in one call: ~10% of a CPU step saved.
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    # A last partial batch smaller than the number of processes would leave a rank without rows (and DDP's
    # all-reduce waiting for it): drop it in that case only.
    full, remainder = divmod(len(train_idx), cfg.batch_size)
    steps_per_epoch = full + (1 if remainder >= world else 0)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _schedule(cfg, steps_per_epoch))
    order = torch.Generator().manual_seed(cfg.seed)  # batch order, drawn on CPU for every device

    epoch, step0, perm = 0, 0, None
    best_val, bad_epochs, best_epoch = math.inf, 0, -1
    best_state: dict[str, torch.Tensor] | None = None
    elapsed_before = 0.0
    loss_sum = torch.zeros((), device=device)
    loss_count = 0
    if resume:
        tensors, state = load_checkpoint(ckpt_dir)
        model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
        optim.load_state_dict(unflatten_optimizer(tensors, state["optimizer"]))
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        order.set_state(tensors["rng.order"])
        if device.type == "cuda" and "rng.cuda" in tensors:
            torch.cuda.set_rng_state(tensors["rng.cuda"], device)
        epoch, step0 = state["epoch"], state["step"]
        perm = tensors.get("perm")
        best_val, bad_epochs, best_epoch = state["best_val"], state["bad_epochs"], state["best_epoch"]
        best_state = {
            k[len("best.") :]: v.to(device) for k, v in tensors.items() if k.startswith("best.")
        } or None
        elapsed_before = state["elapsed"]
        loss_sum = tensors["loss_sum"].to(device)
        loss_count = state["loss_count"]
        if lead:
            log.info("resuming", extra=fields(epoch=epoch + 1, step=step0, run=str(out)))

    metrics_path = out / "metrics.jsonl"
    history: list[dict[str, Any]] = []
    if metrics_path.exists():  # keep the rows the checkpoint knows about, drop any written after it
        history = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
        history = [row for row in history if row["epoch"] <= epoch]
    if lead:
        metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history))

    stop = {"requested": False}

    def on_sigterm(_signum: int, _frame: Any) -> None:
        stop["requested"] = True

    previous_handler = signal.signal(signal.SIGTERM, on_sigterm)

    def checkpoint(at_epoch: int, at_step: int, current_perm: torch.Tensor | None) -> None:
        if not lead:
            return
        opt_tensors, opt_rest = flatten_optimizer(optim.state_dict())
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.order"] = order.get_state()
        if device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
        if current_perm is not None:
            tensors["perm"] = current_perm
        if best_state is not None:
            tensors.update({f"best.{k}": v for k, v in best_state.items()})
        tensors["loss_sum"] = loss_sum
        state = {
            "epoch": at_epoch, "step": at_step, "optimizer": opt_rest, "scheduler": sched.state_dict(),
            "best_val": best_val, "bad_epochs": bad_epochs, "best_epoch": best_epoch,
            "elapsed": elapsed_before + (time.monotonic() - started), "loss_count": loss_count,
            "config": cfg.model_dump(mode="json"),
        }  # fmt: skip
        save_checkpoint(ckpt_dir, tensors, state)

    # Fault injection for tests: deliver a real SIGTERM to this process after global step N.
    sigterm_at = int(os.environ.get("EDGEOPS_FAULT_SIGTERM_AT_STEP", "0"))
    started = time.monotonic()
    stopped_early = False
    try:
        while epoch < cfg.epochs:
            epoch_start = time.monotonic()
            if perm is None:
                perm = torch.randperm(len(train_idx), generator=order)
            perm_dev = perm.to(device)
            net.train()
            for step in range(step0, steps_per_epoch):
                batch = perm_dev[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                rows = train_idx.index_select(0, batch)
                if world > 1:
                    rows = rows[rank::world]  # each rank takes its share of the global batch
                loss = train_step(step_fn, optim, snap, rows, grad_clip=cfg.grad_clip, amp=amp)
                sched.step()
                loss_sum += loss.detach()
                loss_count += 1
                if sigterm_at and epoch * steps_per_epoch + step + 1 == sigterm_at and lead:
                    os.kill(os.getpid(), signal.SIGTERM)
                requested = stop["requested"]
                if world > 1:  # every rank stops at the same step
                    flag = torch.tensor([1.0 if requested else 0.0], device=device)
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    requested = bool(flag.item())
                if requested:
                    checkpoint(epoch, step + 1, perm)
                    if lead:
                        log.warning(
                            f"stopped by SIGTERM at epoch {epoch + 1}, step {step + 1}/{steps_per_epoch}; "
                            f"checkpoint saved: continue with --resume",
                            extra=fields(run=str(out)),
                        )
                    raise SystemExit(EXIT_PREEMPTED)

            val_logits = _predict(model, snap, val_idx, cfg.eval_batch_size, amp)
            val_loss = float(F.binary_cross_entropy_with_logits(val_logits, snap.labels[val_idx]))
            val_acc = float(((val_logits > 0) == (snap.labels[val_idx] > 0.5)).all(dim=1).float().mean())
            row = {
                "epoch": epoch + 1,
                "train_loss": round(float(loss_sum) / max(loss_count, 1), 6),
                "val_loss": round(val_loss, 6),
                "val_subset_accuracy": round(val_acc, 6),
                "lr": optim.param_groups[0]["lr"],
                "seconds": round(time.monotonic() - epoch_start, 3),
            }
            history.append(row)
            if lead:
                with open(metrics_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                log.info(
                    f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f}, "
                    f"val loss {val_loss:.4f}, "
                    f"val subset accuracy {val_acc:.3f} ({row['seconds']:.1f}s)"
                )
            if val_loss < best_val - 1e-6:
                best_val, bad_epochs, best_epoch = val_loss, 0, epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            epoch, step0, perm = epoch + 1, 0, None
            loss_sum = torch.zeros((), device=device)
            loss_count = 0
            checkpoint(epoch, 0, None)
            if cfg.early_stop_patience and bad_epochs >= cfg.early_stop_patience:
                stopped_early = True
                if lead:
                    log.info(
                        f"early stop: no better validation loss for {bad_epochs} epochs "
                        f"(best: epoch {best_epoch})"
                    )
                break
    finally:
        signal.signal(signal.SIGTERM, previous_handler)

    wall = elapsed_before + (time.monotonic() - started)
    if best_state is not None:
        model.load_state_dict(best_state)
    result: dict[str, Any] = {}
    if lead:
        result = _finish(
            model=model,
            snap=snap,
            cfg=cfg,
            out=out,
            history=history,
            val_idx=val_idx,
            test_idx=test_idx,
            amp=amp,
            wall=wall,
            world=world,
            device=device,
            best_epoch=best_epoch,
            stopped_early=stopped_early,
            snapshot_dir=snapshot_dir,
            n_params=n_params,
            n_train=len(train_idx),
        )
    if world > 1:
        dist.barrier()
    return result


def _raised(tuned: dict[str, Any], capped: dict[str, Any], cfg: TrainingConfig) -> dict[str, Any]:
    """The modes whose F-beta threshold had to rise to keep false alarms within the budget (validation
    reports at the tuned and at the final thresholds), each said in the log by name."""
    raised: dict[str, Any] = {}
    for mode, after in capped["per_mode"].items():
        before = tuned["per_mode"][mode]
        if after["threshold"] == before["threshold"]:
            continue
        raised[mode] = {
            "from": before["threshold"], "to": after["threshold"], "val_recall_from": before["recall"],
            "val_recall_to": after["recall"], "val_auroc": after["auroc"],
        }  # fmt: skip
        log.warning(
            "%s: threshold raised from %.2f to %.3f to keep alarms on healthy validation windows within "
            "%.1f%% (threshold_max_fp_rate): its validation recall falls from %.3f to %.3f. The model "
            "separates %s too weakly on this data (validation AUROC %s) to keep both.",
            mode, before["threshold"], after["threshold"], 100 * cfg.threshold_max_fp_rate, before["recall"],
            after["recall"], mode, after["auroc"],
        )  # fmt: skip
    if tuned["fp_rate"] > cfg.threshold_max_fp_rate >= capped["fp_rate"]:
        log.info("false alarms on healthy validation windows: %.3f at the F-beta thresholds, %.3f now",
                 tuned["fp_rate"], capped["fp_rate"])  # fmt: skip
    elif capped["fp_rate"] > cfg.threshold_max_fp_rate:
        log.warning(
            "false alarms on healthy validation windows stay at %.3f > threshold_max_fp_rate %.3f even at "
            "the highest thresholds: the model is sure of alarms on healthy windows", capped["fp_rate"],
            cfg.threshold_max_fp_rate,
        )  # fmt: skip
    return raised


def _finish(
    *, model: FailureModeModel, snap: TrainingTensors, cfg: TrainingConfig, out: Path,
    history: list[dict[str, Any]], val_idx: torch.Tensor, test_idx: torch.Tensor, amp: bool, wall: float,
    world: int, device: torch.device, best_epoch: int, stopped_early: bool, snapshot_dir: Path,
    n_params: int, n_train: int,
) -> dict[str, Any]:  # fmt: skip
    """After the loop (lead rank): thresholds on val, metrics on test, weights, plots and run.json."""
    from training.metrics import cap_false_alarms, confusion, evaluate, tune_thresholds
    from training.plots import plot_confusion, plot_curves

    labels = list(cfg.labels)
    val_probs = torch.sigmoid(_predict(model, snap, val_idx, cfg.eval_batch_size, amp)).cpu().numpy()
    val_true = snap.labels[val_idx].cpu().numpy().astype(np.uint8)
    tuned = tune_thresholds(val_true, val_probs, beta=cfg.threshold_beta)
    thresholds = cap_false_alarms(val_true, val_probs, tuned, cfg.threshold_max_fp_rate)
    split_metrics = {"val": evaluate(val_true, val_probs, thresholds, labels)}
    raised = _raised(evaluate(val_true, val_probs, tuned, labels), split_metrics["val"], cfg)
    if len(test_idx):
        test_probs = torch.sigmoid(_predict(model, snap, test_idx, cfg.eval_batch_size, amp)).cpu().numpy()
        test_true = snap.labels[test_idx].cpu().numpy().astype(np.uint8)
        split_metrics["test"] = evaluate(test_true, test_probs, thresholds, labels)
        conf = confusion(test_true, (test_probs >= thresholds).astype(np.uint8))
    else:
        conf = confusion(val_true, (val_probs >= thresholds).astype(np.uint8))

    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, out / "weights.safetensors"
    )
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    plot_curves(history, plots / "curves.png")
    plot_confusion(conf, labels, plots / "confusion.png")

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    samples = sum(1 for _ in history) * n_train
    result = {
        "format": "edgeops-run/v1",
        "snapshot": {
            "path": str(snapshot_dir),
            "fingerprint": snap.meta["fingerprint"],
            "rows": len(snap.split),
        },
        "interface": interface_hash(cfg.data_spec()),
        "config": cfg.model_dump(mode="json"),
        "model": {"parameters": n_params, "vocabularies": snap.meta["vocabularies"]},
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "stopped_early": stopped_early,
        "thresholds": {name: float(t) for name, t in zip(labels, thresholds, strict=True)},
        "thresholds_raised": raised,
        "metrics": split_metrics,
        "timing": {
            "wall_seconds": round(wall, 3),
            "device": device.type,
            "gpu": gpu,
            "world_size": world,
            "gpu_hours": round(wall * world / 3600, 6) if gpu else 0.0,
            "train_samples_per_second": round(samples / wall, 1) if wall > 0 else None,
        },
        "source": {
            "commit": _git_commit(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            # The CPU kernel set this run computed with (ATEN_CPU_CAPABILITY can lower it; oneDNN's own
            # ONEDNN_MAX_CPU_ISA is recorded as set): same weights are promised for the same set only.
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        },
    }
    (out / "run.json").write_text(json.dumps(result, indent=2) + "\n")
    test = split_metrics.get("test", split_metrics["val"])
    log.info(
        f"trained in {wall:.1f}s: best epoch {best_epoch}; "
        f"test subset accuracy {test['subset_accuracy']:.3f} "
        f"(always-healthy baseline {test['healthy_baseline_subset_accuracy']:.3f}), "
        f"FP rate {test['fp_rate']:.3f}, "
        f"FN rate {test['fn_rate']:.3f}",
        extra=fields(run=str(out)),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``torchrun -m training.train`` (``edgeops train --nproc N`` starts it)."""
    from tools.core.log import setup_logging

    parser = argparse.ArgumentParser(prog="python -m training.train")
    parser.add_argument("--snapshot", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--config")
    parser.add_argument(
        "--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
        help="override one training-config key, e.g. --set epochs=5 (repeatable; a YAML value)",
    )  # fmt: skip
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--log-json", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(json_lines=args.log_json)
    try:
        # every rank builds the same effective config: the file, its base: chain, then each --set in order
        cfg = load_training_config(Path(args.config) if args.config else None, overrides=args.overrides)
        train(Path(args.snapshot), cfg, output_folder(args.out, "--out"), resume=args.resume)
    except EdgeopsError as exc:
        log.error(str(exc))
        return exc.exit_code
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
