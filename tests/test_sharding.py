"""Mesh construction, regex sharding rules and global batches on 8 fake CPU devices."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from locvqa_jax import sharding


def test_mesh_fills_the_minus_one_axis():
  mesh = sharding.make_mesh([("data", -1), ("fsdp", 4)])
  assert dict(mesh.shape) == {"data": 2, "fsdp": 4}


def test_mesh_errors_name_the_problem():
  with pytest.raises(ValueError, match="needs 16 devices, 8 are available"):
    sharding.make_mesh([("data", 4), ("fsdp", 4)])
  with pytest.raises(ValueError, match="must name the axes"):
    sharding.make_mesh([("fsdp", -1), ("data", 1)])


def test_fsdp_splits_the_largest_divisible_axis():
  assert sharding.fsdp_spec((6, 16), 4) == P(None, "fsdp")
  assert sharding.fsdp_spec((32, 16), 4) == P("fsdp", None)
  assert sharding.fsdp_spec((6, 10), 4) == P()  # Nothing divides: replicated.
  assert sharding.fsdp_spec((), 4) == P()


def test_rules_match_full_paths_first_rule_wins():
  mesh = sharding.make_mesh([("data", 2), ("fsdp", 4)])
  shapes = {
      "encoder": {"pos_embedding": jax.ShapeDtypeStruct((1, 16, 8), np.float32),
                  "Dense_0": {"kernel": jax.ShapeDtypeStruct((8, 32), np.float32),
                              "bias": jax.ShapeDtypeStruct((32,), np.float32)}},
      "decoder": {"head": {"kernel": jax.ShapeDtypeStruct((8, 12), np.float32)}},
  }
  rules = [(".*/pos_embedding", "replicate"), ("decoder/.*", (None, "fsdp")), (".*", "fsdp")]
  out = sharding.tree_shardings(mesh, shapes, rules)
  assert out["encoder"]["pos_embedding"].spec == P()
  assert out["encoder"]["Dense_0"]["kernel"].spec == P(None, "fsdp")
  assert out["encoder"]["Dense_0"]["bias"].spec == P("fsdp")
  assert out["decoder"]["head"]["kernel"].spec == P(None, "fsdp")


def test_unknown_strategy_is_named():
  mesh = sharding.make_mesh([("data", -1), ("fsdp", 1)])
  with pytest.raises(ValueError, match="'.\\*': unknown strategy 'shard'"):
    sharding.spec_for("a/b", (4,), [(".*", "shard")], mesh)


def test_global_batch_is_split_over_both_axes():
  mesh = sharding.make_mesh([("data", 2), ("fsdp", 4)])
  batch = {"x": np.arange(16 * 3, dtype=np.float32).reshape(16, 3)}
  out = sharding.make_global_batch(batch, mesh)
  assert out["x"].shape == (16, 3)
  assert out["x"].sharding.spec == P(("data", "fsdp"))
  assert len(out["x"].addressable_shards) == 8
  assert out["x"].addressable_shards[0].data.shape == (2, 3)
  np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])


def test_batch_size_must_divide_over_devices():
  mesh = sharding.make_mesh([("data", -1), ("fsdp", 1)])
  with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
    sharding.local_batch_size(12, mesh)
