"""Config loading: file arguments, typed overrides, and unknown keys failing with a suggestion."""

import textwrap

import pytest

from locvqa_jax import config as config_lib

_CONFIG = textwrap.dedent("""
    import ml_collections
    from locvqa_jax import config as config_lib

    def get_config(arg=None):
      arg = config_lib.parse_arg(arg, variant='micro', res=128, runlocal=False, tasks='cap+aref')
      c = ml_collections.ConfigDict()
      c.variant = arg.variant
      c.res = arg.res
      c.runlocal = arg.runlocal
      c.tasks = tuple(arg.tasks.split('+'))
      c.optax = dict(learning_rate=1e-4, b1=0.9)
      c.total_steps = 10
      c.name = 'x'
      return c
    """)


@pytest.fixture
def config_file(tmp_path):
  path = tmp_path / "exp.py"
  path.write_text(_CONFIG)
  return str(path)


def test_file_arguments_take_the_defaults_types(config_file):
  c = config_lib.load_config(f"{config_file}:variant=B/16,res=448,runlocal,tasks=cap+gcap")
  assert (c.variant, c.res, c.runlocal, c.tasks) == ("B/16", 448, True, ("cap", "gcap"))
  d = config_lib.load_config(config_file)
  assert (d.variant, d.res, d.runlocal) == ("micro", 128, False)


def test_unknown_file_argument_is_named(config_file):
  with pytest.raises(config_lib.ConfigError, match="unknown config argument 'resolution'.*'res'"):
    config_lib.load_config(f"{config_file}:resolution=224")


def test_overrides_keep_types(config_file):
  argv = ["--workdir", "W", "--config.optax.learning_rate=3e-4", "--config.total_steps", "20",
          "--config.name=007"]
  rest, overrides = config_lib.split_overrides(argv)
  assert rest == ["--workdir", "W"]
  c = config_lib.load_config(config_file, overrides)
  assert c.optax.learning_rate == 3e-4 and c.total_steps == 20 and c.name == "007"


def test_unknown_key_fails_with_suggestion(config_file):
  with pytest.raises(config_lib.ConfigError) as e:
    config_lib.load_config(config_file, [("optim.lr", "1e-3")])
  assert str(e.value) == ("unknown config key 'config.optim.lr' -- did you mean "
                          "'config.optax.learning_rate'?")
  with pytest.raises(config_lib.ConfigError, match="did you mean 'config.total_steps'"):
    config_lib.load_config(config_file, [("total_step", "5")])


def test_wrong_type_is_an_error(config_file):
  with pytest.raises(config_lib.ConfigError, match="--config.total_steps: expected an int"):
    config_lib.load_config(config_file, [("total_steps", "ten")])


def test_config_is_locked_after_loading(config_file):
  c = config_lib.load_config(config_file)
  with pytest.raises(AttributeError):
    c.new_key = 1


def test_missing_required_keys_are_listed(config_file):
  c = config_lib.load_config(config_file)
  with pytest.raises(config_lib.ConfigError, match="'config.mesh', 'config.optax.b2'"):
    config_lib.check_required(c, ["res", "mesh", "optax.b2"], "trainer")


def _pretrain(arg: str = ""):
  return config_lib.load_config("configs/pretrain_locca.py" + (f":{arg}" if arg else ""))


def test_pretrain_config_defaults_are_the_micro_smoke_size():
  c = _pretrain()
  assert c.model_name == "cappa" and c.model.encoder.variant == "micro"
  assert c.input.res == "r128" and c.input.tasks == ("cap", "aref", "gcap", "caref")
  assert c.loss.masked_pred_prob == 0.25 and c.loss.masking_ratio == 1.0
  assert c.loss.task_names == c.input.tasks
  assert c.best.metric.startswith("val/") and c.evals.val.split == "validation"


def test_pretrain_config_vocab_size_is_shared_by_reference():
  c = _pretrain("runlocal")
  with c.unlocked():
    c.vocab_size = 1234
  assert c.model.decoder.vocab_size == 1234
  assert c.model.decoder.max_len >= c.input.text_len + c.evals.val.max_decode_len


def test_pretrain_config_arguments_and_presets():
  c = _pretrain("variant=B/16,res=224,tasks=caref+aref,masked_pred_prob=0.5")
  assert c.model.encoder.variant == "B/16" and c.input.res == "r224"
  assert c.input.tasks == ("caref", "aref") and c.loss.num_tasks == 2
  assert c.loss.masked_pred_prob == 0.5
  p = _pretrain("preset=paper")
  assert p.model.encoder.variant == "So400m/14" and p.input.res == "r448"
  assert (p.model.decoder.num_layers, p.model.decoder.emb_dim) == (12, 768)
  assert (p.lr, p.optax.b1, p.optax.b2, p.wd, p.input.batch_size) == (1e-4, 0.9, 0.95, 1e-2, 32)
  assert p.model.encoder.dtype_mm == "bfloat16" and p.model.decoder.remat_policy != "none"
  assert p.grad_accum_steps > 1 and p.loss.masked_pred_prob == 0.25
  b = _pretrain("preset=b16")
  assert b.model.encoder.variant == "B/16" and b.model.decoder.num_layers == 6
  assert b.loss.masked_pred_prob == 0.75
  with pytest.raises(ValueError, match="preset='huge'"):
    _pretrain("preset=huge")


def test_pretrain_config_typos_get_useful_suggestions():
  with pytest.raises(config_lib.ConfigError, match="'config.optax.learning_rate' -- did you mean "
                                                   "'config.lr'"):
    config_lib.load_config("configs/pretrain_locca.py", [("optax.learning_rate", "1e-3")])
  with pytest.raises(config_lib.ConfigError, match="'resolution' in 'resolution=224' -- did you "
                                                   "mean 'res'"):
    _pretrain("resolution=224")
