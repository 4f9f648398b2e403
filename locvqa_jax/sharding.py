"""Device mesh, regex sharding rules over parameter paths, and global batches.

The mesh has the axes ('data', 'fsdp'), given in the config as e.g.
`mesh = [('data', -1), ('fsdp', 1)]` (-1: all remaining devices). Parameters and optimizer state
are sharded by the first matching rule of `sharding_rules`, a list of `(regex, how)` where the
regex is matched (re.fullmatch) against the '/'-joined path of the leaf (`params/encoder/
Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel`, `opt/1/0/mu/decoder/...`) and `how` is

  'replicate'            every device holds the whole leaf;
  'fsdp'                 the largest dimension divisible by the 'fsdp' axis size is split over it;
  a tuple                an explicit PartitionSpec, e.g. (None, 'fsdp').

Batches are split over both axes on their leading dimension.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp")
BATCH_AXES = ("data", "fsdp")


def maybe_initialize_distributed(enabled: bool, **kwargs: Any) -> None:
  """Starts JAX's multi-host runtime when asked to by the config or `LOCVQA_DISTRIBUTED=1`.

  On TPU pods and SLURM/Open MPI clusters `jax.distributed.initialize()` discovers the
  coordinator itself; elsewhere pass coordinator_address, num_processes and process_id (the
  config's `distributed` block or the JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
  JAX_PROCESS_ID environment variables).
  """
  if not (enabled or os.environ.get("LOCVQA_DISTRIBUTED", "") == "1"):
    return
  kwargs = {k: v for k, v in kwargs.items() if v not in (None, "", -1)}
  jax.distributed.initialize(**kwargs)
  logging.info("jax.distributed: process %d of %d, %d local / %d global devices",
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())


def make_mesh(axes: Sequence[tuple[str, int]], devices: Sequence[Any] | None = None) -> Mesh:
  """Builds the device mesh.

  Args:
    axes: [(name, size)] with names exactly MESH_AXES in order; one size may be -1.
    devices: defaults to all global devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  names = tuple(name for name, _ in axes)
  if names != MESH_AXES:
    raise ValueError(f"config.mesh must name the axes {MESH_AXES} in that order, got {names}")
  sizes = [int(size) for _, size in axes]
  if sizes.count(-1) > 1:
    raise ValueError(f"config.mesh: at most one axis may be -1, got {list(axes)}")
  known = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f"config.mesh {list(axes)}: {len(devices)} devices are not divisible "
                       f"by {known}")
    sizes[sizes.index(-1)] = len(devices) // known
  if int(np.prod(sizes)) != len(devices):
    raise ValueError(f"config.mesh {list(axes)} needs {int(np.prod(sizes))} devices, "
                     f"{len(devices)} are available")
  # Auto axes: the compiler propagates shardings from the jit boundaries, as big_vision expects;
  # jax.make_mesh would default to explicit axes that every gather must annotate.
  auto = (jax.sharding.AxisType.Auto,) * len(names)
  if devices == list(jax.devices()):
    return jax.make_mesh(tuple(sizes), names, axis_types=auto, devices=devices)
  return Mesh(np.asarray(devices).reshape(sizes), names, axis_types=auto)


def path_str(path: Sequence[Any]) -> str:
  """A jax key path as 'a/b/0/c'."""
  parts = []
  for entry in path:
    for attr in ("key", "name", "idx"):
      if hasattr(entry, attr):
        parts.append(str(getattr(entry, attr)))
        break
    else:
      parts.append(str(entry))
  return "/".join(parts)


def tree_paths(tree: Any) -> Any:
  """A tree of the same structure whose leaves are their '/'-joined paths."""
  return jax.tree_util.tree_map_with_path(lambda p, _: path_str(p), tree)


def fsdp_spec(shape: Sequence[int], axis_size: int, axis: str = "fsdp") -> P:
  """Splits the largest dimension divisible by axis_size; replicated if none is."""
  if axis_size == 1 or not shape:
    return P()
  for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
    if shape[dim] % axis_size == 0 and shape[dim] >= axis_size:
      spec = [None] * len(shape)
      spec[dim] = axis
      return P(*spec)
  return P()


def spec_for(path: str, shape: Sequence[int], rules: Sequence[tuple[str, Any]],
             mesh: Mesh) -> P:
  """The PartitionSpec of one leaf under the first matching rule (replicated if none)."""
  for pattern, how in rules:
    if re.fullmatch(pattern, path):
      if how == "replicate":
        return P()
      if how == "fsdp":
        return fsdp_spec(shape, mesh.shape["fsdp"])
      if isinstance(how, (tuple, list)):
        if len(how) > len(shape):
          raise ValueError(f"sharding rule {pattern!r} -> {how} has more entries than {path} "
                           f"has dimensions {tuple(shape)}")
        return P(*how)
      raise ValueError(f"sharding rule {pattern!r}: unknown strategy {how!r}; expected "
                       "'replicate', 'fsdp' or a PartitionSpec tuple")
  return P()


def tree_shardings(mesh: Mesh, shapes: Any, rules: Sequence[tuple[str, Any]]) -> Any:
  """NamedShardings for every leaf of a tree of arrays or ShapeDtypeStructs."""
  return jax.tree_util.tree_map_with_path(
      lambda p, x: NamedSharding(mesh, spec_for(path_str(p), np.shape(x), rules, mesh)), shapes)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension over both mesh axes."""
  return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def place_like(value: Any, like: jax.Array) -> jax.Array:
  """A host value on the sharding and dtype of `like` (each device, on any host, gets its slice)."""
  value = np.asarray(value, like.dtype)
  sharding = getattr(like, "sharding", None)
  if sharding is None:
    return jax.numpy.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])


def make_global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles the per-process batches into global arrays sharded over the batch axes.

  Args:
    local_batch: this process's slice; leading dimension = global batch / process_count.
  """
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Per-process batch size; fails if the batch does not split evenly over devices."""
  n = mesh.shape["data"] * mesh.shape["fsdp"]
  if global_batch_size % n:
    raise ValueError(f"config.input.batch_size={global_batch_size} is not divisible by the "
                     f"{n} devices of the mesh {dict(mesh.shape)}")
  return global_batch_size // jax.process_count()
