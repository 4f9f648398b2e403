"""Tokenizer: fixed ids, user-defined symbols, round trips, serialisation, box tokens."""

import pickle

import numpy as np
import pytest

from locvqa_jax import tokenizer as tokenizer_lib

CORPUS = [
    "the heart size is normal.", "there is a small left pleural effusion.",
    "apical cap is seen on the right.", "no pneumothorax.", "moderate pulmonary edema.",
    "what has changed compared to the reference image?", "nothing has changed.",
    "the main image has an additional finding of pneumothorax than the reference image.",
] * 20


@pytest.fixture(scope="module")
def tok():
  return tokenizer_lib.train_tokenizer(CORPUS, vocab_size=2000)


def test_special_ids(tok):
  assert (tok.pad_id, tok.eos_id, tok.bos_id, tok.unk_id) == (0, 1, 2, 3)
  assert [tok.id_to_piece(i) for i in range(4)] == ["<pad>", "</s>", "<s>", "<unk>"]
  assert tok.mask_id == tok.vocab_size
  assert 1288 < tok.vocab_size <= 2000


def test_loc_symbols_are_single_tokens(tok):
  assert len(tok.loc_ids) == 1024 and len(set(tok.loc_ids)) == 1024
  for k in (0, 1, 511, 1023):
    assert tok.encode(f"<loc{k:04d}>") == [tok.loc_ids[k]]
  ids = tok.encode("effusion <loc0012><loc0044> <loc0100> <loc1023>")
  assert ids[-4:] == [tok.loc_ids[12], tok.loc_ids[44], tok.loc_ids[100], tok.loc_ids[1023]]


def test_task_prefixes(tok):
  for t in tokenizer_lib.TASK_TOKENS:
    assert tok.encode(t) == [tok.task_ids[t]]
  ids = tok.encode("apical cap is seen.")
  assert not set(ids) & set(tok.task_ids.values())
  assert tok.encode("<caref> small effusion")[0] == tok.task_ids["<caref>"]


def test_round_trip_text(tok):
  for s in ["there is a small left pleural effusion.", "nothing has changed.",
            "<gcap> <loc0001><loc0002><loc0003><loc0004> no pneumothorax."]:
    assert tok.decode(tok.encode(s)).replace("> ", ">").replace(" <", "<") == (
        s.replace("> ", ">").replace(" <", "<"))
  assert tok.decode([2] + tok.encode("no pneumothorax.") + [1, 0, 0]) == "no pneumothorax."
  assert tok.decode(tok.encode("no pneumothorax.") + [tok.mask_id]) == "no pneumothorax."


def test_bytes_file_and_pickle_round_trip(tok, tmp_path):
  again = tokenizer_lib.Tokenizer.from_bytes(tok.to_bytes())
  assert again.encode("moderate pulmonary edema.") == tok.encode("moderate pulmonary edema.")
  tok.save(str(tmp_path / "t.model"))
  assert tokenizer_lib.Tokenizer.from_file(str(tmp_path / "t.model")).vocab_size == tok.vocab_size
  assert pickle.loads(pickle.dumps(tok)).loc_ids == tok.loc_ids


def test_box_token_round_trip(tok):
  rng = np.random.default_rng(0)
  for _ in range(200):
    y0, x0 = rng.uniform(0, 0.5, 2)
    box = np.array([y0, x0, y0 + rng.uniform(0, 0.5), x0 + rng.uniform(0, 0.5)])
    back = tok.ids_to_box(tok.box_to_ids(box))
    assert np.abs(back - box).max() <= 1 / 1023 / 2 + 1e-6
  assert tokenizer_lib.box_to_bins([-0.2, 0.0, 1.0, 1.7]) == [0, 0, 1023, 1023]
  assert tokenizer_lib.box_to_bins([0.5, 0.25, 0.75, 1 / 1023]) == [512, 256, 767, 1]


def test_parse_box(tok):
  box = [0.1, 0.2, 0.3, 0.4]
  ids = [2] + tok.encode("small effusion") + tok.box_to_ids(box) + [1]
  np.testing.assert_allclose(tok.parse_box(ids), box, atol=1 / 2046 + 1e-6)
  assert tok.parse_box(tok.encode("no <loc0001><loc0002><loc0003> box")) is None
  with pytest.raises(ValueError, match="4 location-token ids"):
    tok.ids_to_box([5, 6, 7])


def test_vocab_size_too_small():
  with pytest.raises(ValueError, match="must exceed 1288"):
    tokenizer_lib.train_tokenizer(CORPUS, vocab_size=1200)


def test_unseen_characters_round_trip(tok):
  text = "Zebra QUIRK: 42% ± 3"
  ids = tok.encode(text)
  assert tok.unk_id not in ids
  assert tok.decode(ids) == text
