"""Grain pipelines: batch contract, determinism, sharding, eval pass, resume, mixture, leakage."""

import importlib.util
import io
import os
import pickle
import subprocess
import sys

import grain as grain_top
import grain.python as grain
import numpy as np
import orbax.checkpoint as ocp
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from locvqa_jax import config as config_lib
from locvqa_jax import tokenizer as tokenizer_lib
from locvqa_jax import vqa_source
from locvqa_jax.data import pipeline
from locvqa_jax.data import tasks
from locvqa_jax.data import vqa_inputs

RES = 32
BOX_NAMES = ("right lung", "left lung", "trachea", "cardiac silhouette")
BOXES = np.array([[0.2, 0.1, 0.8, 0.45], [0.2, 0.55, 0.8, 0.9], [0.05, 0.45, 0.3, 0.55],
                  [0.45, 0.35, 0.8, 0.7]], np.float32)
PHRASES = ("small left pleural effusion.", "no pneumothorax.", "mild cardiomegaly.")


def _image(value):
  return np.full((RES, RES, 1), value, np.uint8)


def imagenome_records(n, offset=0):
  """Lists shaped like tfds.data_source's chest_imagenome records; image value = 5 * index."""
  out = []
  for i in range(n):
    k = 1 + i % 3
    out.append({
        "image": _image(5 * (i + offset)), "dicom_id": f"d{i + offset}".encode(),
        "study_id": str(1000 + i + offset).encode(), "view_position": b"PA",
        "objects": {"bbox_name": [n.encode() for n in BOX_NAMES], "bbox": list(BOXES)},
        "phrases": {"text": [PHRASES[j % 3].encode() for j in range(k)],
                    "bbox_name": [BOX_NAMES[1 + j % 3].encode() for j in range(k)],
                    "bbox": [BOXES[1 + j % 3] for j in range(k)]},
        "report": b" FINDINGS: Small left pleural effusion.\n IMPRESSION: No pneumothorax.\n",
    })
  return out


def mimic_records(n):
  """mimic_cxr-like records: two frontal images without scene graph per three, one lateral."""
  return [{"image": _image(200), "dicom_id": f"m{i}".encode(), "study_id": str(5000 + i).encode(),
           "view_position": b"LATERAL" if i % 3 == 2 else b"AP",
           "findings": b"Heart size is normal.", "impression": b"No acute process.",
           "report": b"..."} for i in range(n)]


def vqa_records(n):
  types = vqa_inputs.QUESTION_TYPES
  return [{"main_image": _image(100), "ref_image": _image(100), "study_id": str(7000 + i).encode(),
           "ref_id": str(8000 + i).encode(),
           "questions": {"question": [b"is there pneumothorax?", b"what has changed?"],
                         "answer": [b"no", b"the main image is missing the finding of edema. "],
                         "question_type": [types[1].encode(), types[6].encode()],
                         "row_index": [np.int64(2 * i), np.int64(2 * i + 1)]}}
          for i in range(n)]


@pytest.fixture(scope="module")
def tok():
  corpus = list(PHRASES) + ["heart size is normal.", "no acute process.", "is there edema?",
                            "what has changed?", "the main image is missing the finding of edema."]
  return tokenizer_lib.train_tokenizer(corpus * 20, vocab_size=2000)


@pytest.fixture
def cfg():
  c = tasks.pretrain_input_config()
  c.text_len = 64
  c.max_caption_len = 40
  return c


def _take(loader, n):
  it = iter(loader)
  return [next(it) for _ in range(n)]


def _assert_equal_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batch_contract(tok, cfg):
  loader = pipeline.pretrain_loader(cfg, tok, split="train", global_batch_size=8, train=True,
                                    sources={"chest_imagenome": imagenome_records(12),
                                             "mimic_cxr": mimic_records(6)},
                                    excluded_studies=set())
  batch = _take(loader, 1)[0]
  want = {"image": ((8, RES, RES, 1), np.float32), "text": ((8, 64), np.int32),
          "mask_ar": ((8, 64), np.int32), "mask_loss": ((8, 64), np.int32),
          "task_id": ((8,), np.int32), "box": ((8, 4), np.float32), "region_id": ((8,), np.int32)}
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == want
  assert batch["image"].min() >= -1 and batch["image"].max() <= 1
  assert (batch["text"][:, 0] == tokenizer_lib.BOS_ID).all()
  np.testing.assert_array_equal(batch["mask_ar"], batch["mask_loss"])
  for row in range(8):
    n = int((batch["text"][row] > 0).sum())
    assert batch["text"][row, n - 1] == tokenizer_lib.EOS_ID and batch["mask_loss"][row, n - 1]
    is_cap = batch["task_id"][row] == 0
    assert (batch["region_id"][row] == -1) == is_cap
    assert (batch["box"][row] == 0).all() == is_cap
    if not is_cap:  # the box in the text is the truth box
      np.testing.assert_allclose(tok.parse_box(batch["text"][row]), batch["box"][row],
                                 atol=1 / 2046 + 1e-6)


def test_determinism_for_a_seed(tok, cfg):
  def run(seed):
    return _take(pipeline.pretrain_loader(
        cfg, tok, split="train", global_batch_size=4, train=True, seed=seed,
        sources={"chest_imagenome": imagenome_records(10)}, excluded_studies=set()), 4)
  first = run(3)
  _assert_equal_batches(first, run(3))
  assert not all(np.array_equal(a["image"], b["image"]) for a, b in zip(first, run(4)))


def _record_ids(batches):
  """Record index of every example (images are 5 * index; augmentation off)."""
  return [int(round((v + 1) * 127.5 / 5)) for b in batches for v in b["image"][:, 0, 0, 0]]


def test_sharding_two_processes_disjoint(tok, cfg):
  cfg.augment.enabled = False
  records = imagenome_records(16)
  seen = []
  for shard in range(2):
    loader = pipeline.pretrain_loader(
        cfg, tok, split="train", global_batch_size=4, train=True, seed=0,
        sources={"chest_imagenome": records}, excluded_studies=set(),
        shard_options=grain.ShardOptions(shard_index=shard, shard_count=2, drop_remainder=True))
    batches = _take(loader, 4)  # 4 batches of 2 = one epoch of this shard's 8 records
    assert batches[0]["image"].shape[0] == 2
    seen.append(set(_record_ids(batches)))
    assert len(seen[-1]) == 8
  assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(16))


def test_eval_single_pass_padded(tok, cfg):
  assert cfg.tasks_per_image == "one" and cfg.eval_tasks_per_image == "all"
  loader = pipeline.pretrain_loader(cfg, tok, split="validation", global_batch_size=8,
                                    train=False, sources={"chest_imagenome": imagenome_records(5)},
                                    excluded_studies=set())
  batches = list(loader)
  assert len(batches) == 3  # 20 examples (5 images x 4 tasks) in batches of 8, last padded
  assert sum(int(b["valid"].sum()) for b in batches) == 20
  valid = np.concatenate([b["valid"] for b in batches]).astype(bool)
  task_ids = np.concatenate([b["task_id"] for b in batches])[valid]
  assert np.bincount(task_ids).tolist() == [5, 5, 5, 5]
  ids = np.array(_record_ids(batches))[valid]
  assert sorted(ids.tolist()) == sorted(list(range(5)) * 4)
  # Evaluation rows carry their phrase's boxes in the image: the truth box first; CAP rows none.
  phrase_boxes = np.concatenate([b["phrase_boxes"] for b in batches])[valid]
  box = np.concatenate([b["box"] for b in batches])[valid]
  assert phrase_boxes.shape == (20, pipeline.MAX_PHRASE_BOXES, 4)
  np.testing.assert_array_equal(phrase_boxes[:, 0], box)
  assert not phrase_boxes[task_ids == 0].any()


def test_eval_rows_carry_every_box_of_their_phrase(tok, cfg):
  """Both lungs named by one sentence: each CAREF row has its box, then the other lung's."""
  records = imagenome_records(6)
  for r in records:
    r["objects"] = {"bbox_name": [b"right lung", b"left lung"], "bbox": list(BOXES[:2])}
    r["phrases"] = {"text": [b"no pneumothorax."] * 2,
                    "bbox_name": [b"right lung", b"left lung"], "bbox": list(BOXES[:2])}
  cfg.tasks, cfg.task_weights = ("caref",), (1.0,)
  batch = next(iter(pipeline.pretrain_loader(
      cfg, tok, split="validation", global_batch_size=6, train=False,
      sources={"chest_imagenome": records}, excluded_studies=set())))
  for box, boxes, region in zip(batch["box"], batch["phrase_boxes"], batch["region_id"]):
    other = BOXES[1] if region == tasks.REGION_INDEX["right lung"] else BOXES[0]
    np.testing.assert_array_equal(boxes[:2], [box, other])
    assert not boxes[2:].any()
  assert len(set(batch["region_id"].tolist())) == 2  # both lungs were drawn


def test_phrase_boxes_of():
  right, left, trachea = BOXES[0], BOXES[1], BOXES[2]
  pairs = [("no pneumothorax.", "right lung", right), ("no pneumothorax.", "left lung", left),
           ("trachea", "trachea", trachea)]
  out = pipeline.phrase_boxes_of(pairs, "no pneumothorax.", left)
  np.testing.assert_array_equal(out[:2], [left, right])
  assert out.shape == (pipeline.MAX_PHRASE_BOXES, 4) and not out[2:].any()
  np.testing.assert_array_equal(pipeline.phrase_boxes_of(pairs, "trachea", trachea)[:2],
                                [trachea, np.zeros(4)])
  many = [("bilateral.", f"r{k}", np.full(4, k / 20, np.float32)) for k in range(12)]
  out = pipeline.phrase_boxes_of(many, "bilateral.", many[5][2])
  assert out[0, 0] == 5 / 20 and len({tuple(r) for r in out}) == pipeline.MAX_PHRASE_BOXES


def test_resume_from_state(tok, cfg):
  def make():
    return pipeline.pretrain_loader(cfg, tok, split="train", global_batch_size=4, train=True,
                                    seed=7, sources={"chest_imagenome": imagenome_records(9)},
                                    excluded_studies=set())
  it = iter(make())
  for _ in range(3):
    next(it)
  state = it.get_state()
  reference = [next(it) for _ in range(4)]  # crosses an epoch boundary (9 records)
  restored = iter(make())
  restored.set_state(state)
  _assert_equal_batches(reference, [next(restored) for _ in range(4)])


def test_resume_through_orbax(tok, cfg, tmp_path):
  def make():
    return iter(pipeline.pretrain_loader(
        cfg, tok, split="train", global_batch_size=2, train=True, seed=1,
        sources={"chest_imagenome": imagenome_records(6)}, excluded_studies=set()))
  it = make()
  next(it)
  next(it)
  with ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data_iter",)) as mgr:
    mgr.save(2, args=ocp.args.Composite(data_iter=grain_top.checkpoint.CheckpointSave(it)))
    mgr.wait_until_finished()
    reference = [next(it) for _ in range(3)]
    restored = make()
    mgr.restore(2, args=ocp.args.Composite(
        data_iter=grain_top.checkpoint.CheckpointRestore(restored)))
  _assert_equal_batches(reference, [next(restored) for _ in range(3)])


def test_mixture_weights(tok, cfg):
  cfg.task_weights = (1.0, 0.0, 0.0, 3.0)
  cfg.augment.enabled = False
  index = pipeline.build_pretrain_index({"chest_imagenome": imagenome_records(4)}, cfg)
  transform = pipeline.PretrainTransform(tok, cfg, train=True)
  counts = np.zeros(4, int)
  for k in range(800):
    counts[transform.random_map(index[k % len(index)], np.random.default_rng(k))["task_id"]] += 1
  assert counts[1] == counts[2] == 0
  assert 0.2 < counts[0] / 800 < 0.3


def test_all_tasks_per_image_and_cap_only_sources(tok, cfg):
  cfg.tasks_per_image = "all"
  index = pipeline.build_pretrain_index({"chest_imagenome": imagenome_records(3),
                                         "mimic_cxr": mimic_records(6)}, cfg)
  # 3 scene-graph images x 4 tasks + 4 frontal MIMIC-CXR images x CAP (laterals skipped)
  assert index.num_real == 3 * 4 + 4
  cfg.tasks = ("aref", "caref")
  cfg.task_weights = (1.0, 1.0)
  index = pipeline.build_pretrain_index({"chest_imagenome": imagenome_records(3),
                                         "mimic_cxr": mimic_records(6)}, cfg)
  assert index.num_real == 3 * 2


def test_leakage_filter(tok, cfg, capsys):
  records = imagenome_records(6)
  excluded = {"1001", "1004", "5000"}
  index = pipeline.build_pretrain_index({"chest_imagenome": records,
                                         "mimic_cxr": mimic_records(3)}, cfg, excluded)
  out = capsys.readouterr().out
  assert "leaky studies dropped=3" in out and "images dropped=3" in out
  studies = {tasks.as_str(index[k]["record"]["study_id"]) for k in range(len(index))}
  assert not studies & excluded and len(studies) == 4 + 1


def test_region_mean_boxes(cfg):
  records = imagenome_records(3)
  records[1]["objects"]["bbox"] = [b + np.float32(0.1) for b in BOXES]
  records[2]["objects"]["bbox"][0] = np.array([0.5, 0.5, 0.5, 0.9], np.float32)  # empty: skipped
  means = pipeline.region_mean_boxes(cfg, records=records, excluded_studies=set())
  assert means.shape == (36, 4)
  np.testing.assert_allclose(means[tasks.REGION_INDEX["right lung"]], BOXES[0] + 0.05, atol=1e-6)
  np.testing.assert_allclose(means[tasks.REGION_INDEX["trachea"]], BOXES[2] + 0.1 / 3, atol=1e-6)
  assert np.isnan(means[tasks.REGION_INDEX["spine"]]).all()
  means = pipeline.region_mean_boxes(cfg, records=records, excluded_studies={"1001"})
  np.testing.assert_allclose(means[tasks.REGION_INDEX["right lung"]], BOXES[0], atol=1e-6)


def test_vqa_pipeline(tok):
  cfg = vqa_inputs.vqa_input_config()
  cfg.text_len = 48
  records = vqa_records(5)
  loader = vqa_inputs.vqa_loader(cfg, tok, split="train", global_batch_size=4, train=True,
                                 records=records)
  batch = _take(loader, 1)[0]
  assert batch["ref_image"].shape == batch["main_image"].shape == (4, RES, RES, 1)
  assert batch["text"].shape == (4, 48) and batch["row_index"].dtype == np.int64
  # Same stored image on both sides: independent augmentation makes them differ.
  assert not np.array_equal(batch["ref_image"], batch["main_image"])
  for row in range(4):
    k = int(batch["row_index"][row]) % 2
    q, a = records[0]["questions"]["question"][k], records[0]["questions"]["answer"][k]
    qi, ai = tok.encode(q.decode()), tok.encode(a.decode())
    n = 1 + len(qi) + len(ai) + 1
    assert batch["text"][row, :n].tolist() == [2, *qi, *ai, 1]
    assert batch["mask_loss"][row].tolist() == [0] * (1 + len(qi)) + [1] * (len(ai) + 1) + [0] * (
        48 - n)
    assert batch["question_type"][row] == (1 if k == 0 else 6)
  cfg.question_types = ("difference",)
  cfg.augment.enabled = False
  batches = list(vqa_inputs.vqa_loader(cfg, tok, split="test", global_batch_size=2, train=False,
                                       records=records))
  valid = np.concatenate([b["valid"] for b in batches]).astype(bool)
  rows = np.concatenate([b["row_index"] for b in batches])[valid]
  assert sorted(rows.tolist()) == [1, 3, 5, 7, 9]
  assert (np.concatenate([b["question_type"] for b in batches]) == 6).all()
  with pytest.raises(ValueError, match="unknown \\['diff'\\]"):
    vqa_inputs.build_vqa_index(records, ("diff",))


def test_question_type_repeats_multiply_training_rows_only():
  records = vqa_records(5)  # two questions per pair: presence, difference
  index = vqa_inputs.build_vqa_index(records)
  repeats = {t: 1 for t in vqa_inputs.QUESTION_TYPES}
  assert vqa_inputs.repeat_question_types(index, repeats) is index
  repeats["difference"] = 3
  out = vqa_inputs.repeat_question_types(index, repeats)
  assert np.bincount(out.entries[:, 3], minlength=7).tolist() == [0, 5, 0, 0, 0, 0, 15]
  assert len(out) == 20
  with pytest.raises(ValueError, match="unknown type 'diff'"):
    vqa_inputs.repeat_question_types(index, {"diff": 2})
  with pytest.raises(ValueError, match="expected an integer >= 1"):
    vqa_inputs.repeat_question_types(index, {"difference": 0})


def test_vqa_batches_do_not_depend_on_read_threads(tok):
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  config = config_lib.load_config_file(os.path.join(repo, "configs", "diff_vqa.py") + ":blind")
  assert config.input.read_threads == 0  # cheap examples: no read-ahead threads
  config.input.swap_pairs = 0.5  # per-record random choices must not depend on threads either
  records = vqa_records(6)

  def batches(threads):
    config.input.read_threads = threads
    return _take(vqa_source.loader(config, tok, split="train", global_batch_size=4, train=True,
                                   records=records), 5)

  _assert_equal_batches(batches(0), batches(16))
  config.input.read_threads = -1
  with pytest.raises(ValueError, match="read_threads=-1"):
    batches(-1)


def test_text_fields_parse_each_record_once(tok, monkeypatch):
  records = vqa_records(6)
  for i, r in enumerate(records):
    r["ref_dicom_id"], r["main_dicom_id"] = f"r{i}".encode(), f"m{i}".encode()
  reads = []

  class Counting(list):

    def __getitem__(self, i):
      reads.append(i)
      return list.__getitem__(self, i)

  fields = vqa_source.TextFields(Counting(records), max_records=4)
  assert len(fields) == 6
  for _ in range(3):
    for i in range(6):
      f = fields[i]
      assert sorted(f) == ["main_dicom_id", "questions", "ref_dicom_id"]
      assert f["main_dicom_id"] == f"m{i}".encode()
      assert f["questions"]["answer"] == records[i]["questions"]["answer"]
      assert f["questions"]["row_index"] == records[i]["questions"]["row_index"]
  assert [reads.count(i) for i in range(6)] == [1, 1, 1, 1, 3, 3]  # at most 4 records kept
  kept = vqa_source.TextFields(records)
  kept[0]  # pylint: disable=pointless-statement
  # Loader processes start with nothing kept.
  assert not pickle.loads(pickle.dumps(kept))._kept  # pylint: disable=protected-access
  # The loader's blind batches are those of the full records.
  config = config_lib.load_config_file(
      os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "configs", "diff_vqa.py") + ":blind")
  config.input.swap_pairs = 0.5

  def batches():
    return _take(vqa_source.loader(config, tok, split="train", global_batch_size=4, train=True,
                                   records=records), 5)

  light = batches()
  monkeypatch.setattr(vqa_source, "TextFields", lambda records: records)
  _assert_equal_batches(light, batches())


def test_bad_config_errors(tok, cfg):
  cfg.task_weights = (1.0, 1.0)
  with pytest.raises(ValueError, match="one non-negative weight per task"):
    pipeline.build_pretrain_index({"chest_imagenome": imagenome_records(2)}, cfg)
  cfg.task_weights = (1.0,) * 4
  with pytest.raises(ValueError, match="not divisible by the 2 data shards"):
    pipeline.pretrain_loader(cfg, tok, split="train", global_batch_size=3, train=True,
                             sources={"chest_imagenome": imagenome_records(4)},
                             excluded_studies=set(), shard_options=grain.ShardOptions(0, 2))
  with pytest.raises(ValueError, match="the index is empty"):
    pipeline.build_pretrain_index({"chest_imagenome": imagenome_records(2)}, cfg,
                                  {"1000", "1001"})


# -- built datasets (tiny stand-ins with the features of CONTRACTS A) ---------------------------

def _png(value, size=RES):
  buf = io.BytesIO()
  Image.fromarray(np.full((size, size), value, np.uint8)).save(buf, format="PNG")
  buf.seek(0)
  return buf


def _toy_builder(name, features, splits):
  """A GeneratorBasedBuilder subclass named `name` writing `splits` = {split: [example]}."""

  class Toy(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="r128")]

    def _info(self):
      return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
      return {s: self._generate_examples(s) for s in splits}

    def _generate_examples(self, split):
      for i, ex in enumerate(splits[split]):
        yield i, ex

  Toy.name = name
  # tfds looks for a checksums file next to the builder's module; a test package module sends
  # it to importlib_resources, which is not installed. A one-part name skips that lookup.
  Toy.__module__ = "toy_" + name
  return Toy


@pytest.fixture(scope="module")
def built_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  text = tfds.features.Text()
  image = tfds.features.Image(shape=(RES, RES, 1), encoding_format="png")
  box = tfds.features.BBoxFeature()
  bbox = tfds.features.BBox

  def scene(i):
    r = imagenome_records(1, i)[0]
    return {"image": _png(5 * i), "dicom_id": f"d{i}", "study_id": str(1000 + i),
            "subject_id": "1", "view_position": "PA",
            "objects": [{"bbox_name": n, "bbox": bbox(*b)} for n, b in zip(BOX_NAMES, BOXES)],
            "phrases": [{"text": t.decode(), "bbox_name": n.decode(), "bbox": bbox(*b),
                         "attributes": "anatomicalfinding|yes|pleural effusion"}
                        for t, n, b in zip(r["phrases"]["text"], r["phrases"]["bbox_name"],
                                           r["phrases"]["bbox"])],
            "report": r["report"].decode()}

  imagenome = _toy_builder("chest_imagenome", {
      "image": image, "dicom_id": text, "study_id": text, "subject_id": text,
      "view_position": text, "objects": tfds.features.Sequence({"bbox_name": text, "bbox": box}),
      "phrases": tfds.features.Sequence({"text": text, "bbox_name": text, "bbox": box,
                                         "attributes": text}),
      "report": text}, {"train": [scene(i) for i in range(4)], "validation": [scene(10)],
                        "test": [scene(20)]})
  mimic_rows = [{"image": _png(200), "dicom_id": f"d{i}" if i < 2 else f"m{i}",
                 "study_id": str(1000 + i if i < 2 else 5000 + i), "subject_id": "1",
                 "view_position": "AP", "study_datetime": "2150-01-01T00:00:00.000",
                 "findings": "Heart size is normal.", "impression": "No acute process.",
                 "report": "x"} for i in range(6)]
  mimic = _toy_builder("mimic_cxr", {
      "image": image, "dicom_id": text, "study_id": text, "subject_id": text,
      "view_position": text, "study_datetime": text, "findings": text, "impression": text,
      "report": text}, {"train": mimic_rows, "validation": mimic_rows[:1], "test": mimic_rows[:1]})

  def pair(study, ref, row):
    return {"main_image": _png(100), "ref_image": _png(90), "study_id": study, "ref_id": ref,
            "subject_id": "1", "main_dicom_id": "a", "ref_dicom_id": "b",
            "questions": [{"question": "is there edema?", "answer": "no",
                           "question_type": "presence", "row_index": row}]}

  vqa = _toy_builder("mimic_diff_vqa", {
      "main_image": image, "ref_image": image, "study_id": text, "ref_id": text,
      "subject_id": text, "main_dicom_id": text, "ref_dicom_id": text,
      "questions": tfds.features.Sequence({"question": text, "answer": text,
                                           "question_type": text, "row_index": np.int64})},
      {"train": [pair("1000", "1003", 0), pair("5002", "5004", 1)],
       "validation": [pair("1001", "1002", 2)], "test": [pair("5003", "9999", 3)]})
  for cls in (imagenome, mimic, vqa):
    cls(data_dir=data_dir, config="r128", file_format="array_record").download_and_prepare()
  return data_dir


def test_vqa_eval_study_ids(built_dir):
  assert tasks.vqa_eval_study_ids(built_dir, "r128") == {"1001", "1002", "5003", "9999"}
  with pytest.raises(FileNotFoundError, match="no built dataset mimic_diff_vqa/r224"):
    tasks.vqa_eval_study_ids(built_dir, "r224")


def test_pretrain_from_built_datasets(built_dir, tok, cfg, capsys):
  cfg.data_dir, cfg.res = built_dir, "r128"
  loader = pipeline.pretrain_loader(cfg, tok, split="train", global_batch_size=4, train=True)
  out = capsys.readouterr().out
  # studies 1001, 1002 (scene graphs) and 5003 (MIMIC-CXR only) sit in the VQA eval splits
  assert "leaky studies dropped=3" in out
  assert "chest_imagenome=2" in out and "mimic_cxr (extra CAP)=3" in out
  batches = _take(loader, 3)
  assert batches[0]["image"].shape == (4, RES, RES, 1)
  cfg.worker_count = 1  # worker processes give the same batches as the main process
  again = pipeline.pretrain_loader(cfg, tok, split="train", global_batch_size=4, train=True)
  assert "index: 5 rows from" in capsys.readouterr().out  # the cached index
  _assert_equal_batches(batches, _take(again, 3))
  for _ in range(2):  # scanned, then from the cache
    means = pipeline.region_mean_boxes(cfg)
    np.testing.assert_allclose(means[tasks.REGION_INDEX["left lung"]], BOXES[1], atol=1e-6)
  assert any(f.startswith("region_boxes_train") for f in
             os.listdir(os.path.join(built_dir, "locvqa_index_cache")))


def test_index_cache_follows_rebuilds(built_dir, cfg):
  cfg.data_dir, cfg.res = built_dir, "r128"
  first = pipeline.index_cache_path(cfg, "pretrain", ["chest_imagenome"], "train", {})
  assert first.startswith(os.path.join(built_dir, "locvqa_index_cache"))
  info = os.path.join(tasks.built_dir(built_dir, "chest_imagenome", "r128"), "dataset_info.json")
  stat = os.stat(info)
  os.utime(info, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  assert pipeline.index_cache_path(cfg, "pretrain", ["chest_imagenome"], "train", {}) != first
  cfg.index_cache_dir = ""
  assert pipeline.index_cache_path(cfg, "pretrain", ["chest_imagenome"], "train", {}) is None
  cache = str(built_dir) + "/ids"
  assert tasks.vqa_eval_study_ids(built_dir, "r128", cache) == {"1001", "1002", "5003", "9999"}
  assert len(os.listdir(cache)) == 1
  assert tasks.vqa_eval_study_ids(built_dir, "r128", cache) == {"1001", "1002", "5003", "9999"}


def test_tokenizer_command(built_dir, tmp_path, capsys):
  out = tmp_path / "tok.model"
  tokenizer_lib.main(["--data_dir", built_dir, "--config", "r128", "--vocab_size", "1500",
                      "--out", str(out)])
  printed = capsys.readouterr().out
  assert "dropped chest_imagenome=2" in printed and "dropped mimic_cxr=2" in printed
  tok = tokenizer_lib.Tokenizer.from_file(str(out))
  assert tok.encode("<loc0007>") == [tok.loc_ids[7]] and tok.vocab_size <= 1500


def test_vqa_from_built_dataset(built_dir, tok):
  cfg = vqa_inputs.vqa_input_config()
  cfg.data_dir, cfg.text_len = built_dir, 32
  batches = list(vqa_inputs.vqa_loader(cfg, tok, split="train", global_batch_size=2,
                                       train=False))
  assert len(batches) == 1 and batches[0]["row_index"].tolist() == [0, 1]
  np.testing.assert_allclose(batches[0]["main_image"][:, 0, 0, 0], 100 / 127.5 - 1, atol=1e-6)
  np.testing.assert_allclose(batches[0]["ref_image"][:, 0, 0, 0], 90 / 127.5 - 1, atol=1e-6)


# -- the real builders on the synthetic generator's output --------------------------------------

def test_end_to_end_on_synthetic_builds(tmp_path):
  """Generator -> three builders -> tokenizer command -> both pipelines (skipped without the
  builders)."""
  if importlib.util.find_spec("tfds_builders.build") is None:
    pytest.skip("tfds_builders.build is not importable")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + sys.path))
  raw, data_dir = str(tmp_path / "raw"), str(tmp_path / "built")
  run = lambda *a: subprocess.run([sys.executable, "-m", *a], cwd=root, env=env, check=True,
                                  capture_output=True, timeout=600)
  run("locvqa_jax.data.synthetic", "--out", raw, "--patients", "8", "--seed", "0",
      "--image-size", "128")
  for name in tasks.DATASETS:
    run("tfds_builders.build", name, f"--manual_dir={raw}", "--config=r128",
        f"--data_dir={data_dir}")
  run("locvqa_jax.tokenizer", "--data_dir", data_dir, "--config", "r128", "--out",
      str(tmp_path / "tok.model"))
  tok = tokenizer_lib.Tokenizer.from_file(str(tmp_path / "tok.model"))
  cfg = tasks.pretrain_input_config()
  cfg.data_dir = data_dir
  excluded = tasks.vqa_eval_study_ids(data_dir, "r128")
  assert excluded
  sources = pipeline.open_pretrain_sources(cfg, "train")
  index = pipeline.build_pretrain_index(sources, cfg, excluded)
  assert not {tasks.as_str(index[k]["record"]["study_id"]) for k in range(len(index))} & excluded
  batch = _take(pipeline.pretrain_loader(cfg, tok, split="train", global_batch_size=8,
                                         train=True), 1)[0]
  assert batch["image"].shape == (8, 128, 128, 1) and batch["text"].shape == (8, 196)
  for row in np.nonzero(batch["task_id"] > 0)[0]:
    np.testing.assert_allclose(tok.parse_box(batch["text"][row]), batch["box"][row],
                               atol=1 / 2046 + 1e-6)
    assert 0 <= batch["region_id"][row] < 36
  vcfg = vqa_inputs.vqa_input_config()
  vcfg.data_dir = data_dir
  batches = list(vqa_inputs.vqa_loader(vcfg, tok, split="test", global_batch_size=4, train=False))
  rows = np.concatenate([b["row_index"][b["valid"] > 0] for b in batches])
  assert len(rows) == len(set(rows.tolist())) > 0


@pytest.mark.parametrize("answer,swapped", [
    ("nothing has changed.", "nothing has changed."),
    ("the main image has an additional finding of edema than the reference image. ",
     "the main image is missing the finding of edema than the reference image. "),
    ("the main image has additional findings of atelectasis, and fracture than the reference "
     "image. the main image is missing the finding of pleural effusion than the reference image. ",
     "the main image has an additional finding of pleural effusion than the reference image. the "
     "main image is missing the findings of atelectasis, and fracture than the reference image. "),
    ("the level of pleural effusion has changed from moderate to large to moderate. the main "
     "image is missing the findings of edema, lung opacity, and pneumonia than the reference "
     "image.  ",
     "the level of pleural effusion has changed from moderate to moderate to large. the main "
     "image has additional findings of edema, lung opacity, and pneumonia than the reference "
     "image. "),
    ("the level of edema has changed from mild to severe. ",
     "the level of edema has changed from severe to mild. "),
    # Two ways to split the levels, or text outside the grammar: not swapped.
    ("the level of edema has changed from mild to moderate to severe. ", None),
    ("the main image has a new finding of edema. ", None),
    ("the level of edema has changed from mild to huge. ", None),
])
def test_swap_difference_answer_mirrors_the_grammar(answer, swapped):
  assert vqa_inputs.swap_difference_answer(answer) == swapped
  if swapped is not None:  # Swapping twice gives the answer back (up to trailing whitespace).
    again = vqa_inputs.swap_difference_answer(swapped)
    assert " ".join(again.split()) == " ".join(answer.split())


def test_swap_pairs_swaps_images_and_answer_of_difference_questions_only(tok):
  added = "the main image has an additional finding of edema than the reference image. "
  missing = "the main image is missing the finding of edema than the reference image. "
  records = [{"main_image": _image(200), "ref_image": _image(50), "study_id": b"1",
              "ref_id": b"2",
              "questions": {"question": [b"is there edema?", b"what has changed?"],
                            "answer": [b"yes", added.encode()],
                            "question_type": [b"presence", b"difference"],
                            "row_index": [np.int64(0), np.int64(1)]}}]
  cfg = vqa_inputs.vqa_input_config()
  cfg.text_len, cfg.augment.enabled = 96, False
  cfg.swap_pairs = 1.0

  def rows(train):
    batch = _take(vqa_inputs.vqa_loader(cfg, tok, split="train", global_batch_size=2,
                                        train=train, records=records), 1)[0]
    return {int(r): (batch["ref_image"][i, 0, 0, 0], batch["main_image"][i, 0, 0, 0],
                     batch["text"][i]) for i, r in enumerate(batch["row_index"])}

  def text_of(question, answer):
    ids = [2, *tok.encode(question), *tok.encode(answer), 1]
    return ids + [0] * (96 - len(ids))

  dark, bright = 50 / 127.5 - 1, 200 / 127.5 - 1
  train = rows(True)
  assert train[0][:2] == pytest.approx((dark, bright), abs=1e-6)  # presence: never swapped
  assert train[0][2].tolist() == text_of("is there edema?", "yes")
  assert train[1][:2] == pytest.approx((bright, dark), abs=1e-6)  # difference: swapped
  assert train[1][2].tolist() == text_of("what has changed?", missing)
  evaluation = rows(False)  # Evaluation reads the data as it is.
  assert evaluation[1][:2] == pytest.approx((dark, bright), abs=1e-6)
  assert evaluation[1][2].tolist() == text_of("what has changed?", added)
