"""Named constants of the pipeline, in one place.

The Lab normalisation constants live in `colorization.color`, their one home.
"""

from __future__ import annotations

# Environment variable naming the default storage root; every default below derives from it.
HOME_ENV = "COLORIZATION_HOME"
DEFAULT_HOME = "~/.colorization"

# Folders (or key prefixes) under the storage root.
DATASETS_DIR = "datasets"
MODELS_DIR = "models"
RUNS_DIR = "runs"
CURATION_DIR = "curation"
CHAMPION_POINTER = "champion"

# File names inside a dataset snapshot, a model version and a training run.
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "generator.pt"
CARD_NAME = "card.json"
CHECKPOINT_NAME = "checkpoint.pt"
RESULT_NAME = "result.json"
EXCLUDE_LIST_NAME = "exclude.txt"  # under CURATION_DIR: photo ids curators flagged

# Total attempts per S3 call (first try included) under botocore's standard retry mode.
S3_MAX_ATTEMPTS = 8

# Where work runs: "auto" picks CUDA when present, else the CPU (colorization.devices).
DEFAULT_DEVICE = "auto"
# Numeric precision: "auto" is mixed precision on CUDA (bf16 where supported, else fp16) and
# fp32 on the CPU; "fp32", "bf16" and "fp16" force one (colorization.devices).
DEFAULT_PRECISION = "auto"

# Dataset preparation: the product recipe samples 10,000 COCO images, 8,000 / 2,000.
DEFAULT_SEED = 0
DEFAULT_SAMPLE_SIZE = 10_000
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_IMAGE_SIZE = 256
DEFAULT_SHARD_SIZE = 1_000  # samples per tar shard
READ_THREADS = 8  # overlaps object-store latency while photos are decoded
SHUFFLE_BUFFER = 1_000  # training samples held for shuffling; ~0.4 GB at 256 px in float16
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# Photos whose mean Lab chroma is below this are treated as grayscale / sepia and filtered out.
MIN_MEAN_CHROMA = 3.0
PREPARE_LOG_EVERY = 500  # progress line every N photos while a split is written

# pix2pix training recipe (Isola et al. 2017).
LEARNING_RATE = 2e-4
ADAM_BETAS = (0.5, 0.999)
L1_WEIGHT = 100.0
DEFAULT_BATCH_SIZE = 16
DEFAULT_EPOCHS = 10  # per stage
DEFAULT_STAGE = "pretrain"
LOG_EVERY_STEPS = 100  # progress lines inside long epochs

# Evaluation.
DEFAULT_EVAL_SPLIT = "val"
DEFAULT_EVAL_BATCH = 16

# Inference.
DEFAULT_INFERENCE_BATCH = 8
OUTPUT_JPEG_QUALITY = 95

# --- Issue 7: training recipe, exact resume, DDP, run curves and grids -----------------------
# Checkpoints: <run>/checkpoints/step-N.pt every N steps (0: epoch ends only) and at each
# epoch end; the newest few are kept so a corrupt newest file falls back to the one before.
CHECKPOINT_DIR = "checkpoints"
DEFAULT_CHECKPOINT_EVERY = 200
KEEP_CHECKPOINTS = 2
# The GAN objective of the discriminator and the generator's adversarial term.
DEFAULT_GAN_MODE = "vanilla"  # or "lsgan"
# Pretrained encoders are fine-tuned more gently than pix2pix's 2e-4 from scratch.
PRETRAINED_ENCODER_LR = 1e-4
# Seeing a run: files written per epoch in the run folder and saved beside the model version.
HISTORY_NAME = "history.json"
LOSS_PLOT_NAME = "losses.png"
GRID_NAME = "val_grid.png"
GRID_PHOTOS = 6  # fixed validation photos in the grid (the first ones of the split)
PROGRESS_LOG_FRACTION = 10  # without a terminal: a progress line every 1/10 epoch
