r"""Difference VQA: the pretrained encoder, frozen and shared by both images, and a language model.

CPU quick start on the synthetic data, after the pretraining smoke run (configs/pretrain_locca.py)
wrote /tmp/locca_micro; the encoder's outputs are cached once, then each step only runs the
small language model (1500 steps, about 6 minutes on 2 CPU cores):

  python -m locvqa_jax.train --config \
      configs/diff_vqa.py:encoder_init=/tmp/locca_micro,runlocal,diff_tokens,image_pos,main_pool=2 \
      --workdir /tmp/vqa_micro
  python -m locvqa_jax.train \
      --config configs/diff_vqa.py:encoder_init=/tmp/locca_micro,runlocal,blind \
      --workdir /tmp/vqa_micro_blind
  python -m locvqa_jax.evaluate --workdir /tmp/vqa_micro --split test \
      --blind_workdir /tmp/vqa_micro_blind

What it reaches (measured on the quick start's data, 1000 synthetic patients at r128, encoder of
its 500-step pretraining, with diff_tokens,image_pos,main_pool=2; README and docs/diff_vqa.md):
on the test split the model beats the blind run on closed questions by 7 points (0.87 vs 0.80),
on difference finding F1 by 0.18 (0.20 vs 0.02) and on difference CIDEr by 0.59 (4.19 vs 3.60,
95 % bootstrap interval of the margin [0.28, 0.91]), at a false-change rate of 0.04.

Arguments (`:name=value,...`; a bare name means true):
  encoder_init     a pretraining workdir ('W' = latest step, 'W:1000'), a big_vision / SigLIP
                   '.npz[:subtree]', or a local Hugging Face SigLIP folder (config.json +
                   *.safetensors, e.g. a SigLIP / MedSigLIP copy or tools/export_encoder.py
                   --format hf output; a SiglipModel folder gives its vision tower); '' = random
                   encoder (tests only). With a workdir the encoder shape and the tokenizer come
                   from its checkpoint; with an HF folder the shape comes from its config.json
                   (1-channel stem: an RGB stem is summed; the attention-pooling head is not
                   loaded; the position table is resampled to res/patch) and the tokenizer must
                   be given (tokenizer=PATH).
  variant          ViT variant when encoder_init is an npz or empty ('micro', 'B/16',
                   'So400m/14', 'w256-d4-m1024-h4/16'); unused for a workdir or HF folder.
  lm               language-model size: 'micro' (2 x 64, CPU), 'small' (4 x 128), 'gpt2'
                   (12 x 768), 'gpt2_medium' (24 x 1024, the authors' size).
  res              image side: 128, 224 or 448 (builder config r<res>).
  question_types   '+'-joined types to train on (default: all seven); all are evaluated.
  freeze           freeze the encoder (default true, as the paper).
  encoder_lr_mult  learning-rate multiplier of the encoder when freeze=false.
  cached           'auto' | 'true' | 'false': read cached encoder outputs instead of pixels
                   (auto: whenever the encoder is frozen and loaded; computed once into
                   <encoder_init>/features_cache/).
  blind            remove the image tokens: the blind baseline (same model and budget).
  image_norm       standardise each encoder token with the mean and std of its position and
                   channel over the training images (default true; locvqa_jax/image_stats.py).
  image_pos        add a learned embedding per image-token position, shared by both images
                   (`image_norm` removes most of the ViT's own position embedding, which is the
                   same for every image), so the language model can line the two images up.
  diff_tokens      the language model reads [main - reference][main] (per token position, after
                   `image_norm`) instead of [reference][main]: the same information with the change
                   explicit, an extension of the paper's layout (docs/diff_vqa.md); the quick
                   start uses it with image_pos.
  image_pool       average the image tokens over image_pool x image_pool windows of the patch
                   grid (after `image_norm`): image_pool**2 times fewer tokens for the language
                   model (default 1; e.g. 2 for So400m/14 at 448, whose 1024 tokens per image
                   make a 2048-token image prefix).
  main_pool        average only the main image's tokens over main_pool x main_pool windows,
                   keeping the first block whole (with diff_tokens: the change at full
                   resolution, the main image at main_pool**2 times fewer tokens); the quick
                   start uses 2, a fifth less time per step.
  lm_from_decoder  start the language model from the pretraining decoder where shapes match.
  runlocal         CPU smoke sizes: micro LM, batch 32, 1500 steps at lr 5e-3, difference
                   questions read twice per epoch, small validation.
  preset           '' | 'paper': So400m/14 encoder at 448 from encoder_init, GPT-2-medium-sized
                   LM, AdamW lr 2e-4 cosine to 1e-6, batch 16, 2 epochs, bfloat16.
  data_dir, tokenizer   as configs/pretrain_locca.py (tokenizer: default the pretraining one).

The checkpoint kept as best (W/checkpoints_best/) is chosen on the validation loss, never on test.
"""

import os

import ml_collections

from locvqa_jax import config as config_lib
from locvqa_jax.data import pipeline
from locvqa_jax.data import vqa_inputs

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA_DIR = os.path.join(_REPO, "data", "synthetic_tfds")
# Medical-Diff-VQA train split size (questions), for the paper's "2 epochs".
_TRAIN_QUESTIONS = 560_000


def _encoder_config(encoder_init, variant):
  """The encoder fields of a pretraining run or HF folder, else the variant's (npz / random)."""
  from locvqa_jax import vqa_init  # pylint: disable=g-import-not-at-top
  spec = vqa_init.parse_encoder_init(encoder_init)
  if spec is not None and spec.kind == "workdir":
    enc = vqa_init.pretrain_encoder_config(spec)
  elif spec is not None and spec.kind == "hf":
    enc = vqa_init.hf_encoder_config(spec)
  else:
    enc = dict(variant=variant, posemb="learn", scan=False, remat_policy="none",
               dtype_mm="float32")
  enc["pool_type"] = "none"
  enc["dropout"] = 0.0
  return enc


def get_config(arg=None):
  """The difference-VQA config; see the module docstring for the arguments."""
  arg = config_lib.parse_arg(
      arg, encoder_init="", variant="micro", lm="micro", res=128, question_types="",
      freeze=True, encoder_lr_mult=0.1, cached="auto", blind=False, image_norm=True,
      image_pos=False, diff_tokens=False, image_pool=1, main_pool=1,
      lm_from_decoder=True, runlocal=False, preset="", data_dir=DEFAULT_DATA_DIR, tokenizer="")
  if arg.preset not in ("", "paper"):
    raise ValueError(f"configs/diff_vqa.py: preset={arg.preset!r}; expected '' or 'paper'")
  paper = arg.preset == "paper"
  res = 448 if paper else arg.res
  if arg.cached.lower() not in ("auto", "true", "false"):
    raise ValueError(f"configs/diff_vqa.py: cached={arg.cached!r}; expected auto, true or false")
  cached = (bool(arg.freeze and arg.encoder_init) if arg.cached.lower() == "auto"
            else arg.cached.lower() == "true")
  if cached and not arg.freeze:
    raise ValueError("configs/diff_vqa.py: cached=true needs freeze=true (a trained encoder's "
                     "outputs change every step)")

  c = ml_collections.ConfigDict()
  c.seed = 0
  c.tokenizer = arg.tokenizer
  c.vocab_size = ml_collections.FieldReference(None, field_type=int)  # From the tokenizer.
  c.init = dict(encoder=arg.encoder_init, lm_from_decoder=arg.lm_from_decoder)

  # Input (locvqa_jax/vqa_source.py over locvqa_jax/data/vqa_inputs.py).
  c.input = vqa_inputs.vqa_input_config()
  c.input.pipeline = "locvqa_jax.vqa_source"
  c.input.data_dir = arg.data_dir
  c.input.res = f"r{res}"
  c.input.question_types = tuple(t for t in arg.question_types.split("+") if t)
  c.input.batch_size = 16 if paper else 64
  c.input.features = dict(enabled=cached, dir="auto", dtype="float32", batch_size=32)
  c.input.trim_bucket = 32  # Cut padding per batch (vqa_source.trim_text); 0: fixed text_len.
  # A cached or blind example is a few array lookups and a tokenisation, cheaper than the
  # bookkeeping of grain's 16 read-ahead threads: without them the loader needs a third of the
  # CPU time and runlocal trains at 3.5 instead of 2.8 steps/s on 2 cores. Pixel pairs keep them.
  c.input.read_threads = 0 if (cached or arg.blind) else pipeline.READ_THREADS
  max_decode_len = c.input.max_answer_len + 1  # The longest answer and its eos.

  # Model (locvqa_jax/models/diff_vqa.py).
  c.model_name = "diff_vqa"
  c.model = ml_collections.ConfigDict()
  c.model.encoder = _encoder_config(arg.encoder_init, "So400m/14" if paper else arg.variant)
  if paper:
    c.model.encoder.update(dtype_mm="bfloat16")
  c.model.lm_preset = "gpt2_medium" if paper else arg.lm
  c.model.lm = dict(max_len=c.input.text_len + max_decode_len, dropout=0.0 if not paper else 0.1,
                    use_bias=True, remat_policy="nothing_saveable" if paper else "none",
                    dtype_mm="bfloat16" if paper else "float32")
  c.model.lm.vocab_size = c.get_ref("vocab_size")
  c.model.freeze_encoder = arg.freeze
  c.model.blind = arg.blind
  c.model.normalize_image = arg.image_norm
  c.model.image_positions = arg.image_pos
  c.model.difference_tokens = arg.diff_tokens
  c.model.image_pool = arg.image_pool
  c.model.main_pool = arg.main_pool

  # Loss: the trainer's prefix-LM cross-entropy on answer + eos, per question type.
  c.loss = dict(name="captioning", masked_pred_prob=0.0, masking_ratio=1.0,
                num_tasks=len(vqa_inputs.QUESTION_TYPES), task_names=vqa_inputs.QUESTION_TYPES)

  # Optimizer (locvqa_jax/optim.py).
  c.total_steps = 2 * _TRAIN_QUESTIONS // c.input.batch_size
  c.lr = 2e-4
  c.wd = 1e-2
  c.wd_mask = (".*/kernel",)
  c.optax = dict(b1=0.9, b2=0.999, eps=1e-8)
  c.schedule = dict(warmup_steps=1000 if paper else 200, decay_type="cosine",
                    end_lr_ratio=1e-6 / 2e-4)
  c.grad_clip_norm = 1.0
  c.frozen = ("encoder/.*",) if arg.freeze else ()
  c.lr_mults = () if arg.freeze else (("encoder/.*", arg.encoder_lr_mult),)
  c.grad_accum_steps = 1

  # Mesh and sharding (locvqa_jax/sharding.py).
  c.mesh = [("data", -1), ("fsdp", 1)]
  c.sharding_rules = [(".*", "fsdp")]
  c.distributed = dict(enabled=False, coordinator_address="", num_processes=-1, process_id=-1)

  # Logging, checkpoints, validation (locvqa_jax/evaluators/diff_vqa.py).
  c.log_every_steps = 50
  c.ckpt_every_steps = 2000
  c.keep_ckpts = 2
  c.evals = ml_collections.ConfigDict()
  c.evals.val = dict(type="diff_vqa", split="validation", every_steps=2000, batch_size=64,
                     max_batches=0, decode_batches=8, max_decode_len=max_decode_len,
                     beam_size=1, num_samples=12)
  c.best = dict(metric="val/loss", mode="min")

  if arg.runlocal:
    c.input.batch_size = 32
    c.input.worker_count = 1  # One loader process beside the step: about 20 % more steps/s.
    # Batches end between 50 and 117 text tokens; widths of 16 cut a tenth of the padding that
    # 32 leaves, for two or three more compilations of the step.
    c.input.trim_bucket = 16
    c.total_steps = 1500
    c.lr = 5e-3
    # The difference questions are a fifth of the questions and the hardest: read them twice.
    c.input.question_type_repeats["difference"] = 2
    c.schedule.warmup_steps = 100
    c.log_every_steps = 25
    c.ckpt_every_steps = 500
    c.evals.val.update(every_steps=500, batch_size=64, max_batches=8, decode_batches=2,
                       num_samples=8)
  return c
