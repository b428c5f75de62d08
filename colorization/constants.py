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

# ----------------------------------------------------------------------------------------
# Issue 6: COCO at the source, curated sample, compact shards.
# ----------------------------------------------------------------------------------------
COCO_SCHEME = "coco://"  # `coco://<split>` names a COCO 2017 split as a source
COCO_MIRROR_ENV = "COLORIZATION_COCO_MIRROR"  # HTTP(S) base URL, s3:// prefix or folder
COCO_OFFICIAL_MIRROR = "http://images.cocodataset.org"
COCO_ANNOTATIONS_ZIP = "annotations/annotations_trainval2017.zip"  # the published bundle
RAW_DIR = "raw"  # downloaded photos are kept under <home>/raw/coco/<split>/
DOWNLOAD_THREADS = 16  # parallel downloads; latency-bound, not CPU-bound
DOWNLOAD_ATTEMPTS = 4  # tries per photo (first included) before it is recorded as bad
DOWNLOAD_BACKOFF_S = 0.5  # first retry delay; doubles each retry
HTTP_TIMEOUT_S = 60.0
HTTP_ATTEMPTS = 5  # tries per HTTP(S) read in storage's read-only http backend
PREPARE_BATCH = 128  # candidates per download / conversion batch (a Prefect task each)
CONVERT_CHUNK = 8  # photos per worker-process call: small, so a batch's last calls balance
MIN_HUE_SPREAD = 3.0  # degrees; circular spread of the hue below this is one tint (sepia)
HUE_GRID = 16  # the hue spread is measured on a 16 x 16 grid of block means
MIN_TRAIN_SHARDS = 32  # shards per split at full scale: DDP ranks x loader workers
MIN_SHARD_SAMPLES = 16  # never split a split into shards smaller than this
SAMPLE_FORMAT_VERSION = 3  # manifest format_version of snapshots with `lab.zst` samples
# Zstandard settings of the `lab.zst` planes. The residuals are near-noise: entropy coding
# does the work and matches are rare, so level 1 (the smallest below 5; negative levels are
# 40 % larger) with a 64 KB window, a tiny hash table and matches of 7+ bytes only: on 90
# real photos at 256 px, 87.3 KB and 0.32 ms a photo against 89.9 KB and 0.50 ms at plain
# level 1.
SAMPLE_ZSTD_LEVEL = 1
SAMPLE_ZSTD_WINDOW_LOG = 16
SAMPLE_ZSTD_HASH_LOG = 6
SAMPLE_ZSTD_MIN_MATCH = 7
SHARD_WRITE_THREADS = 4  # shards written at once by `prepare_dataset` (I/O and fsync bound)

# --- Evaluation and review (issue 10) --------------------------------------------------------
EVAL_CONFIDENCE = 0.95  # the summary's interval: Student-t on the per-photo values
EVAL_DIR = "evaluation"  # <model>/evaluation/<split>/<slice>/<photo>.png, written once
EVAL_SLICES = ("grayscale", "colorized", "original")  # the review's group slices
DEFAULT_REVIEW_PORT = 5151  # the FiftyOne App's usual port; always bound to 127.0.0.1
REVIEW_DATASET_PREFIX = "colorization-"  # colorization-<model id>, colorization-data-<id>
REVIEW_DATA_PREFIX = "colorization-data-"
FIFTYONE_DIR = "fiftyone"  # <local home>/fiftyone/db when no FiftyOne database is configured
EXCLUDE_TAG = "exclude"  # reviewers tag samples with it; `colorize curate export` collects
REVIEW_WORST_FRACTION = 0.1  # `worst`: this share of the photos by CIEDE2000, at least one
# `suspect-truth` originals: mean Lab chroma below this (about 3% of COCO-like photos) ...
SUSPECT_MAX_CHROMA = 5.0
# ... or a hue spread (degrees, as prepare's filter measures it) below this: one tint. Both
# are looser than prepare's drop thresholds, so photos near them are flagged for a look.
SUSPECT_MAX_HUE_SPREAD = 2 * MIN_HUE_SPREAD

# ---- Bulk colorization of archives (issue 8): colorization.bulk, colorization.inference ----
# Suffixes `colorize bucket` / `colorize images` read: the training ones plus GIF (first frame).
BULK_IMAGE_SUFFIXES = (*IMAGE_SUFFIXES, ".gif")
# Inference precision: "auto" is bf16 + channels_last on GPUs and on CPUs with native bf16
# (measured faster, colours within mean CIEDE2000 0.5 of fp32: README), else fp32.
DEFAULT_INFERENCE_PRECISION = "auto"
# Threads that read+decode and encode+write beside the model (I/O and codecs release the GIL).
DEFAULT_IO_WORKERS = 4
# Pictures refused from their header: 80 megapixels is an A3 page at 1,200 dpi, and stays
# below Pillow's own decompression-bomb warning (89.5 MP).
MAX_INPUT_PIXELS = 80_000_000
# Inputs per flow task (and per manifest journal); big enough to keep the model busy.
DEFAULT_CHUNK_SIZE = 256
# Where the output prefix keeps the manifest of what was done (`colorization.bulk_manifest`).
BULK_MANIFEST_DIR = "_manifest"

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

# --- Issue 9: model lineage, the promotion gate, export ---------------------------------------
# The code version of a model card: this variable (set in images built without .git), else
# `git rev-parse HEAD` of the checkout the package runs from, else unknown (null).
GIT_COMMIT_ENV = "COLORIZATION_GIT_COMMIT"
# Promotion gate (colorization.gate): a challenger replaces the champion only when, on the
# same validation snapshot, its mean CIEDE2000 is at most the champion's + this margin ...
GATE_CIEDE2000_MARGIN = 0.0
# ... and its mean colourfulness gap (|colourfulness - the truth's|) at most the champion's +
# this margin: colour strength may wander a little, the colour error may not grow.
GATE_COLORFULNESS_GAP_MARGIN = 2.0
# Exported generators: <model>/<EXPORT_BASENAME>.<format suffix> unless --out says otherwise.
EXPORT_BASENAME = "generator"
ONNX_OPSET = 20  # the torch 2.14 exporter's default, pinned so exports do not drift; ORT >= 1.17
# Prefect task retries for failures that can heal (network, storage): attempts after the
# first, the first delay (doubling each retry) and a +/- jitter share of each delay.
TASK_RETRIES = 3
TASK_RETRY_BACKOFF_S = 10.0
TASK_RETRY_JITTER = 0.2
