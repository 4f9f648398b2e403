"""configs' model_init: the pretraining encoder starts from a big_vision npz through the trainer hook."""

import jax
import ml_collections
import numpy as np
import pytest

from locvqa_jax.models import cappa
from locvqa_jax.models import npz


def _init(seed):
  model = cappa.Model(preset="micro", decoder=dict(vocab_size=20))
  image = np.zeros((1, 32, 32, 1), np.float32)
  text = np.ones((1, 4), np.int32)
  return model.init(jax.random.PRNGKey(seed), image, text, np.ones((1, 4), np.int32))["params"]


def _config(**kw):
  return ml_collections.ConfigDict({"model_init": "", "model_dont_load": (), **kw})


def test_npz_model_init_replaces_the_encoder_only(tmp_path):
  source, fresh = _init(1), _init(2)
  path = str(tmp_path / "encoder.npz")
  npz.save(path, source["encoder"])
  loaded = cappa.load_pretrained(fresh, _config(model_init=path))
  for a, b in zip(jax.tree.leaves(loaded["encoder"]), jax.tree.leaves(source["encoder"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  for a, b in zip(jax.tree.leaves(loaded["decoder"]), jax.tree.leaves(fresh["decoder"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dont_load_keeps_initial_values_and_empty_path_is_a_no_op(tmp_path):
  source, fresh = _init(1), _init(2)
  path = str(tmp_path / "encoder.npz")
  npz.save(path, source["encoder"])
  loaded = cappa.load_pretrained(fresh, _config(model_init=path, model_dont_load=("embedding/.*",)))
  np.testing.assert_array_equal(np.asarray(loaded["encoder"]["embedding"]["kernel"]),
                                np.asarray(fresh["encoder"]["embedding"]["kernel"]))
  assert cappa.load_pretrained(fresh, _config()) == dict(fresh)


def test_mismatched_checkpoint_names_the_parameters(tmp_path):
  source, fresh = _init(1), _init(2)
  partial = {k: dict(v) if isinstance(v, dict) else v for k, v in source["encoder"].items()}
  partial["Transformer"].pop("encoder_norm")
  path = str(tmp_path / "partial.npz")
  npz.save(path, partial)
  with pytest.raises(ValueError, match="encoder_norm"):
    cappa.load_pretrained(fresh, _config(model_init=path))
