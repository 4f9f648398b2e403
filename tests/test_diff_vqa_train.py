"""Stage 2 through the real trainer: encoder init and freezing, cached features, answer-only loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vqa_fixture
from locvqa_jax import checkpointing
from locvqa_jax import features_cache
from locvqa_jax import image_stats
from locvqa_jax import losses
from locvqa_jax import train
from locvqa_jax import vqa_init
from locvqa_jax import vqa_source
from locvqa_jax.models import diff_vqa


@pytest.fixture(scope="module")
def pretrain(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("pretrain"))
  return workdir, vqa_fixture.make_pretrain_workdir(workdir)


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_config_reads_the_pretraining_encoder_and_tokenizer(pretrain, tmp_path):
  workdir, _ = pretrain
  c = vqa_fixture.make_config(workdir, str(tmp_path / "f"))
  assert c.model.encoder.variant == "micro" and c.model.encoder.pool_type == "none"
  assert c.frozen == ("encoder/.*",) and c.input.features.enabled
  assert c.best.metric == "val/loss" and c.evals.val.split == "validation"
  tok = vqa_source.build_tokenizer(c)
  assert tok.vocab_size == vqa_fixture.tokenizer().vocab_size
  unfrozen = vqa_fixture.make_config(workdir, "", "freeze=false,encoder_lr_mult=0.5")
  assert unfrozen.frozen == () and unfrozen.lr_mults == (("encoder/.*", 0.5),)
  assert not unfrozen.input.features.enabled
  with pytest.raises(ValueError, match="cached=true needs freeze=true"):
    vqa_fixture.make_config(workdir, "", "freeze=false,cached=true")


def test_frozen_encoder_equals_the_pretrained_one_after_training(pretrain, tmp_path):
  workdir, pre_params = pretrain
  c = vqa_fixture.make_config(workdir, "", "cached=false")
  out = train.train_and_evaluate(c, str(tmp_path / "vqa"))
  params = jax.device_get(out["state"]["params"])
  # Loaded exactly, and unchanged by the training steps.
  _assert_trees_equal(params["encoder"], pre_params["encoder"])
  assert int(out["state"]["step"]) == 3
  # The language model did train, and started from the decoder's self-attention.
  _, saved = checkpointing.load_params(str(tmp_path / "vqa"))
  _assert_trees_equal(saved["encoder"], pre_params["encoder"])
  assert np.isfinite(out["train"]["train/loss"])


def test_lm_init_copies_the_decoder(pretrain, tmp_path):
  workdir, pre_params = pretrain
  c = vqa_fixture.make_config(workdir, str(tmp_path / "f"),
                              vocab_size=vqa_fixture.tokenizer().vocab_size)
  model = diff_vqa.Model(**c.model.to_dict())
  batch = jnp.zeros((1, 2, vqa_fixture.RES, vqa_fixture.RES, 1))
  text = jnp.zeros((1, 4), jnp.int32)
  params = model.init(jax.random.PRNGKey(0), batch, text, text)["params"]
  loaded = vqa_init.load_pretrained(params, c)
  _assert_trees_equal(loaded["encoder"], pre_params["encoder"])
  np.testing.assert_array_equal(loaded["lm"]["Block0"]["SelfAttn"]["key"]["kernel"],
                                pre_params["decoder"]["EncDecBlock0"]["SelfAttn"]["key"]["kernel"])
  np.testing.assert_array_equal(loaded["lm"]["EmbedTargets"]["embedding"],
                                pre_params["decoder"]["EmbedTargets"]["embedding"][:-1])


def test_cached_features_are_the_encoder_outputs_and_train(pretrain, tmp_path):
  workdir, pre_params = pretrain
  c = vqa_fixture.make_config(workdir, str(tmp_path / "features"))
  store = features_cache.open_store(c, "train", vqa_fixture.records("train"))
  assert len(store) == 24  # 12 pairs, two distinct images each
  run = features_cache.encoder_fn(c.model.encoder.to_dict())
  rec = vqa_fixture.records("train")[3]
  image = jnp.asarray(rec["main_image"], jnp.float32)[None] * (2 / 255) - 1
  np.testing.assert_allclose(store["m3"], run(pre_params["encoder"], image)[0], atol=1e-6)
  batch = next(vqa_fixture.train_iterator(c, vqa_fixture.tokenizer(), global_batch_size=8,
                                          seed=0))
  assert batch["image"].shape == (8, 2, 4, 64)
  out = train.train_and_evaluate(c, str(tmp_path / "vqa"))
  _assert_trees_equal(jax.device_get(out["state"]["params"]["encoder"]), pre_params["encoder"])
  assert "val/loss" in out["eval"] and "val/loss_difference" in out["eval"]


def test_loss_only_on_answer_and_eos(pretrain, tmp_path):
  workdir, _ = pretrain
  c = vqa_fixture.make_config(workdir, str(tmp_path / "f"), "blind",
                              vocab_size=vqa_fixture.tokenizer().vocab_size)
  tok = vqa_fixture.tokenizer()
  batch = next(vqa_fixture.train_iterator(c, tok, global_batch_size=8, seed=0))
  assert batch["image"].shape == (8, 2, 1, 1)  # Blind: the images are never read.
  text, mask_loss = batch["text"], batch["mask_loss"]
  for r in range(8):
    ids = [int(t) for t in text[r]]
    eos = ids.index(1)
    weighted = [i for i in range(len(ids)) if mask_loss[r, i]]
    answer_start = weighted[0]
    assert weighted == list(range(answer_start, eos + 1))  # Answer tokens and eos, nothing else.
    assert tok.decode(ids[1:answer_start]).startswith(("what has changed", "is there"))
  model = diff_vqa.Model(**c.model.to_dict())
  params = model.init(jax.random.PRNGKey(0), batch["image"], text[:, :-1],
                      batch["mask_ar"][:, :-1])["params"]
  params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(1), x.shape),
                        params)
  loss, aux = losses.get("captioning")(model, diff_vqa, params, batch, jax.random.PRNGKey(0), c,
                                       False)
  logits = model.apply({"params": params}, batch["image"], text[:, :-1], batch["mask_ar"][:, :-1],
                       mask_tokens=(text[:, :-1] != 0).astype(jnp.int32))[0]
  logp = jax.nn.log_softmax(logits)
  manual = []
  for r in range(8):
    pos = np.flatnonzero(mask_loss[r, 1:])
    manual.append(-float(jnp.mean(logp[r, pos, text[r, 1:][pos]])))
  assert float(loss) == pytest.approx(np.mean(manual), rel=1e-5)
  assert aux["count_per_task"].sum() == 8


def test_trim_text_cuts_padding_only():
  text = np.zeros((2, 140), np.int32)
  text[0, :20] = 5
  text[1, :40] = 6
  batch = {"text": text, "mask_ar": text > 0, "mask_loss": text > 0, "row_index": np.arange(2)}
  out = vqa_source.trim_text(batch, 32)
  assert out["text"].shape == (2, 64) and out["mask_loss"].shape == (2, 64)
  np.testing.assert_array_equal(out["text"], text[:, :64])
  assert out["row_index"] is batch["row_index"]
  assert vqa_source.trim_text({"text": np.ones((1, 140), np.int32), "mask_ar": text[:1],
                               "mask_loss": text[:1]}, 32)["text"].shape == (1, 140)


def test_image_norm_holds_training_statistics_and_stays_fixed(pretrain, tmp_path):
  workdir, pre_params = pretrain
  c = vqa_fixture.make_config(workdir, str(tmp_path / "features"))
  assert c.model.normalize_image
  out = train.train_and_evaluate(c, str(tmp_path / "vqa"))
  norm = jax.device_get(out["state"]["params"]["image_norm"])
  tokens = np.asarray(features_cache.open_store(c, "train", vqa_fixture.records("train")).array,
                      np.float64)
  np.testing.assert_allclose(norm["mean"], tokens.mean(0), atol=1e-6)
  np.testing.assert_allclose(norm["inv_std"], 1 / np.sqrt(tokens.var(0) + 1e-6), rtol=1e-4)
  # The same statistics from pixels, running the encoder instead of reading the cache.
  uncached = vqa_fixture.make_config(workdir, "", "cached=false")
  mean, inv_std = image_stats.training_statistics(uncached, pre_params["encoder"])
  np.testing.assert_allclose(mean, norm["mean"], atol=1e-5)
  np.testing.assert_allclose(inv_std, norm["inv_std"], rtol=1e-3)
  _, saved = checkpointing.load_params(str(tmp_path / "vqa"))
  _assert_trees_equal(saved["image_norm"], norm)  # Saved as set: never trained.


def test_token_statistics_run_in_chunks():
  rng = np.random.RandomState(0)
  tokens = rng.normal(3.0, 0.5, (50, 4, 6))
  mean, inv_std = image_stats.token_statistics([tokens[:7], tokens[7:30], tokens[30:]])
  np.testing.assert_allclose(mean, tokens.mean(0), rtol=1e-6)
  np.testing.assert_allclose(inv_std, 1 / np.sqrt(tokens.var(0) + 1e-6), rtol=1e-5)
  with pytest.raises(ValueError, match="no training images"):
    image_stats.token_statistics([])


def test_swap_pairs_reverses_cached_features_of_difference_questions():
  tok = vqa_fixture.tokenizer()
  added = "the main image has an additional finding of edema than the reference image. "
  record = {"ref_dicom_id": b"r", "main_dicom_id": b"m",
            "questions": {"question": [b"is there edema?", b"what has changed?"],
                          "answer": [b"yes", added.encode()],
                          "question_type": [b"presence", b"difference"],
                          "row_index": [np.int64(0), np.int64(1)]}}
  store = {"r": np.zeros((4, 64), np.float32), "m": np.ones((4, 64), np.float32)}
  cfg = dict(max_question_len=40, max_answer_len=96, text_len=140, swap_pairs=1.0)
  rng = np.random.default_rng(0)

  def example(k, train):
    op = vqa_source.PairFromCache(tok, cfg, store, train)
    return op.random_map({"record": record, "entry": (0, 0, k, (1, 6)[k]), "valid": 1}, rng)

  assert example(0, True)["image"][:, 0, 0].tolist() == [0, 1]  # presence: as stored
  swapped = example(1, True)
  assert swapped["image"][:, 0, 0].tolist() == [1, 0]
  assert tok.encode("the main image is missing the finding of edema than the reference image.")[
      :5] == [int(t) for t in swapped["text"][1 + len(tok.encode("what has changed?")):][:5]]
  assert example(1, False)["image"][:, 0, 0].tolist() == [0, 1]  # evaluation: as stored
