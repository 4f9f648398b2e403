r"""Location-aware pretraining: ViT encoder + CapPa decoder on CAP, AREF, GCAP and CAREF.

CPU smoke run on the synthetic data (2 CPU cores, a few minutes):

  python -m locvqa_jax.train \
      --config configs/pretrain_locca.py:variant=micro,res=128,runlocal \
      --workdir /tmp/locca_micro

What it should reach (measured on 40 synthetic patients, 300 steps, about 3 minutes on 2 busy
CPU cores): training loss 7.3 -> 3.5, validation loss 3.5 (CAP 2.1, AREF 4.5, GCAP 4.2,
CAREF 6.2), CAP BLEU-4 about 0.1; boxes still score IoU 0. The quick start adds `quickstart`
(boxes weighted up, lr 1e-2, 500 steps, location soft targets, constrained boxes); its numbers
beside the per-region mean-box baseline are in docs/training.md ("Box quality in the quick
start"). The validation prints loss per task, AREF/CAREF IoU and accuracy at IoU 0.5 beside the
baseline, GCAP/CAP BLEU-4 and CIDEr, and writes W/samples_<step>.txt.

Arguments (`:name=value,...`; a bare name means true):
  variant           ViT variant: 'micro' (CPU smoke size), big_vision's 'mu/16' .. 'So400m/14',
                    or explicit 'w256-d4-m1024-h4/16'.
  res               image side: 128, 224 or 448 (the builder config r<res>).
  tasks             '+'-joined subset of cap, aref, gcap, caref (the paper's ablations).
  masked_pred_prob  share of examples in parallel-prediction mode (default 0.25 as in the
                    paper; 0.75 with preset=b16 as in CapPa).
  masking_ratio     share of suffix tokens masked in that mode (1.0: all).
  data_dir          TFDS data_dir with the built datasets (default: quickstart_out/tfds, the
                    synthetic build of tools/quickstart.sh).
  tokenizer         SentencePiece model (default: <data_dir>/tokenizer.model).
  loc_embed_init    'normal' (big_vision's init of the decoder's token embedding) or 'sincos'
                    (the 1024 location rows start as sin/cos features of their bin, so the
                    decoder reads a coordinate it has just written as a number; cappa.Decoder).
  memory_posemb     'none' (big_vision's CapPa) or 'sincos2d': a fixed 2D sin/cos position
                    embedding is added to the encoder tokens the decoder cross-attends to, so
                    a box can be read off where the tokens are (cappa.Decoder).
  runlocal          tiny CPU smoke sizes (batch, steps, eval).
  quickstart        runlocal plus the quick start's settings for boxes (`_quickstart` below).
  preset            '' | 'paper' | 'b16' (below).

preset=paper: the authors' stage-1 scale. So400m/14 at 448 px (1024 tokens), decoder 12 x 768,
AdamW lr 1e-4, betas (0.9, 0.95), weight decay 1e-2, batch 32, bfloat16 matmuls, remat of every
block, 4 gradient-accumulation microbatches of 8, FSDP over all devices.

  TPU pod (every host runs the same command; jax.distributed finds the coordinator):
    gcloud compute tpus tpu-vm ssh $TPU --zone $ZONE --worker=all --command \
      "cd locvqa_jax && python -m locvqa_jax.train \
         --config configs/pretrain_locca.py:preset=paper,data_dir=gs://B/tfds \
         --workdir gs://B/locca_paper --config.distributed.enabled=true"

  One machine with 8 GPUs (one process sees all devices; no jax.distributed needed):
    python -m locvqa_jax.train --config configs/pretrain_locca.py:preset=paper,data_dir=D \
        --workdir W

  Several GPU machines (one process per machine; or let SLURM fill these in):
    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=$i \
    python -m locvqa_jax.train --config configs/pretrain_locca.py:preset=paper,data_dir=D \
        --workdir W --config.distributed.enabled=true

preset=b16: big_vision's CapPa reference shape, B/16 at 224 with a 6 x 768 decoder, lr 1e-3,
batch 256, gradient clipping 1.0, masked_pred_prob 0.75 unless given.
"""

import os

import ml_collections

from locvqa_jax import config as config_lib
from locvqa_jax import tokenizer as tokenizer_lib
from locvqa_jax.data import tasks as tasks_lib

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where tools/quickstart.sh builds the synthetic datasets (git-ignored).
DEFAULT_DATA_DIR = os.path.join(_REPO, "quickstart_out", "tfds")
_PRESETS = ("", "paper", "b16")
# The id of <loc0000>: SentencePiece puts the user-defined symbols right after pad/eos/bos/unk,
# in order (the evaluator checks it against the tokenizer).
LOC_FIRST_ID = 4


def get_config(arg=None):
  """The pretraining config; see the module docstring for the arguments."""
  arg = config_lib.parse_arg(
      arg, variant="micro", res=128, tasks="cap+aref+gcap+caref", masked_pred_prob=-1.0,
      masking_ratio=1.0, data_dir=DEFAULT_DATA_DIR, tokenizer="", runlocal=False, preset="",
      quickstart=False, loc_embed_init="normal", memory_posemb="none")
  if arg.preset not in _PRESETS:
    raise ValueError(f"configs/pretrain_locca.py: preset={arg.preset!r}; expected one of "
                     f"{_PRESETS}")
  paper, b16 = arg.preset == "paper", arg.preset == "b16"
  arg.runlocal = arg.runlocal or arg.quickstart  # The quick start runs at runlocal's sizes.
  variant = "So400m/14" if paper else "B/16" if b16 else arg.variant
  res = 448 if paper else 224 if b16 else arg.res
  masked_pred_prob = (arg.masked_pred_prob if arg.masked_pred_prob >= 0 else
                      0.75 if b16 else 0.25)

  c = ml_collections.ConfigDict()
  c.seed = 0
  c.tokenizer = arg.tokenizer or os.path.join(arg.data_dir, "tokenizer.model")
  c.vocab_size = ml_collections.FieldReference(None, field_type=int)  # From the tokenizer.

  # Input (locvqa_jax/data/pipeline.py; defaults in data/tasks.py).
  c.input = tasks_lib.pretrain_input_config()
  c.input.pipeline = "pretrain"
  c.input.data_dir = arg.data_dir
  c.input.res = f"r{res}"
  c.input.tasks = tuple(arg.tasks.split("+"))
  c.input.task_weights = (1.0,) * len(c.input.tasks)
  c.input.batch_size = 32 if paper else 256 if b16 else 64

  # Model (locvqa_jax/models/cappa.py).
  c.model_name = "cappa"
  remat = "nothing_saveable" if paper else "none"
  dtype = "bfloat16" if (paper or b16) else "float32"
  c.model = ml_collections.ConfigDict()
  c.model.preset = None
  c.model.encoder = dict(variant=variant, pool_type="none", posemb="learn", channels=1,
                         scan=False, remat_policy=remat, dtype_mm=dtype, dropout=0.0)
  if paper or b16:
    decoder = dict(num_layers=12 if paper else 6, emb_dim=768, mlp_dim=3072, num_heads=12,
                   use_bias=False)
  else:
    decoder = dict(num_layers=2, emb_dim=64, mlp_dim=128, num_heads=2, use_bias=True)
  max_decode_len = 24 if arg.runlocal else 64
  # Room for the longest decode: a prefix of up to text_len tokens plus the generated tokens.
  c.model.decoder = dict(decoder, max_len=c.input.text_len + max_decode_len,
                         remat_policy=remat, dtype_mm=dtype, dropout=0.0,
                         loc_embed_init=arg.loc_embed_init, memory_posemb=arg.memory_posemb,
                         loc_ids=(LOC_FIRST_ID, tokenizer_lib.NUM_LOC_TOKENS))
  c.model.decoder.vocab_size = c.get_ref("vocab_size")

  # Encoder initialisation: '' (random), a big_vision / SigLIP 'file.npz[:img]', or a local
  # Hugging Face SigLIP folder; parameters matching model_dont_load keep their initial values.
  c.model_init = ""
  c.model_dont_load = ()

  # Loss (locvqa_jax/losses.py).
  # loc_label_sigma > 0: location targets become Gaussian soft targets over neighbouring bins
  # (losses.loc_soft_targets_xent).
  c.loss = dict(name="captioning", masked_pred_prob=masked_pred_prob,
                masking_ratio=arg.masking_ratio, num_tasks=len(c.input.tasks),
                task_names=c.input.tasks, loc_label_sigma=0.0, loc_first_id=LOC_FIRST_ID)

  # Optimizer (locvqa_jax/optim.py).
  c.total_steps = 2000 if not (paper or b16) else 2 * 200_000 // c.input.batch_size
  c.lr = 1e-3 if b16 else 1e-4 if paper else 1e-3
  c.wd = 1e-2 if paper else 1e-4
  c.wd_mask = (".*/kernel",)
  c.optax = dict(b1=0.9, b2=0.95 if paper else 0.999, eps=1e-8)
  c.schedule = dict(warmup_steps=10_000 if b16 else 500 if paper else 100,
                    decay_type="cosine", end_lr_ratio=0.0)
  c.grad_clip_norm = 1.0
  c.frozen = ()
  c.lr_mults = ()
  c.grad_accum_steps = 4 if paper else 1

  # Mesh and sharding (locvqa_jax/sharding.py).
  c.mesh = [("data", 1), ("fsdp", -1)] if (paper or b16) else [("data", -1), ("fsdp", 1)]
  c.sharding_rules = [(".*", "fsdp")]
  c.distributed = dict(enabled=False, coordinator_address="", num_processes=-1, process_id=-1)

  # Logging, checkpoints, evaluation.
  c.log_every_steps = 50
  c.ckpt_every_steps = 1000
  c.keep_ckpts = 2
  c.evals = ml_collections.ConfigDict()
  c.evals.val = dict(type="pretrain", split="validation", every_steps=1000, batch_size=64,
                     max_batches=0, decode=True, max_decode_len=max_decode_len,
                     baseline_batches=0, constrain_boxes=False,
                     num_samples=12)
  c.best = dict(metric="val/loss", mode="min")

  if arg.runlocal:
    c.input.batch_size = 16
    c.input.text_len = 96
    c.input.max_caption_len = 64
    c.model.decoder.max_len = c.input.text_len + max_decode_len
    c.total_steps = 300
    c.schedule.warmup_steps = 30
    c.log_every_steps = 10
    c.ckpt_every_steps = 100
    c.evals.val.update(every_steps=150, batch_size=32, max_batches=4, baseline_batches=20,
                       num_samples=8)
  if arg.quickstart:
    _quickstart(c)
  return c


def _quickstart(c: ml_collections.ConfigDict) -> None:
  """The quick start's pretraining (with runlocal): the most box quality in about 4 minutes.

  On top of runlocal's sizes: weight decay on the token embedding (below), location tasks
  weighted up in the mixture (a box is 4 tokens of a
  1024-way choice each, a report dozens of easy tokens), lr 1e-2 for 500 steps, no parallel
  prediction (fully masked suffixes hide the box's earlier coordinates, which the tiny decoder
  needs to tell ymin from xmax), Gaussian soft targets over neighbouring location bins
  (sigma 10 bins, about 1 % of the frame), box-constrained decoding in the evaluation
  (evaluators/pretrain.py), and no image augmentation: in a run this short the boxes do not yet
  follow the image (`caref_tracking` about 0), so shifted and scaled training images only blur
  the box each region name has to learn. docs/training.md has the measured numbers.
  """
  weights = {"cap": 1.0, "aref": 2.0, "gcap": 2.0, "caref": 4.0}
  c.input.task_weights = tuple(weights[t] for t in c.input.tasks)
  c.lr = 1e-2
  c.total_steps = 500
  c.loss.masked_pred_prob = 0.0
  c.loss.loc_label_sigma = 10.0
  # Weight decay on the decoder's token embedding only (1 % per step at the peak lr): with
  # loc_embed_init=normal the 1024 location rows start as random N(0, 1) vectors, eight times the
  # position embedding, and each is seen a few times in a short run, so undecayed they drown the
  # position signal the decoder needs to tell ymin from xmax. Decay shrinks the rows that
  # training does not hold up (with loc_embed_init=sincos it shrinks the sin/cos rows too;
  # docs/training.md has runs with and without it).
  c.wd = 1.0
  c.wd_mask = (".*EmbedTargets/embedding",)
  c.input.augment.enabled = False
  c.evals.val.update(every_steps=500, max_batches=6, constrain_boxes=True)
