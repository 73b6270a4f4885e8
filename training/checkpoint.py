"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a folder ``<run>/checkpoint/`` holding ``tensors.safetensors`` (model parameters and
buffers, optimizer moments, RNG states, the current epoch's batch order, the best weights so far) and
``state.json`` (epoch, step, scheduler and optimizer hyper-parameters, early-stopping state, the config).
It is written into a sibling temp folder, fsynced and renamed over the previous one, so a kill at any
instant leaves either the old checkpoint or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tools.core.fsutil import fsync_path, replace_folder

__all__ = ["flatten_optimizer", "load_checkpoint", "save_checkpoint", "unflatten_optimizer"]

_TENSORS = "tensors.safetensors"
_STATE = "state.json"


def save_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # safetensors refuses shared or non-contiguous storage: give it plain CPU copies.
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, tmp / _TENSORS)
    (tmp / _STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
    for name in (_TENSORS, _STATE):
        fsync_path(tmp / name)
    fsync_path(tmp)
    replace_folder(tmp, folder)


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = load_file(str(folder / _TENSORS))
    state = json.loads((folder / _STATE).read_text())
    return tensors, state


def flatten_optimizer(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``optimizer.state_dict()`` -> (tensors keyed ``optim.<param>.<name>``, JSON-able rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in opt_state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{name}"] = value
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [
        {k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in opt_state["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entries in rest["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}
