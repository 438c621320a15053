"""Every budget the project enforces, with its number: one place.

Each limit is decided from what an input states (a header, a file size, a request's arguments) before the work it
bounds starts, and breaking it gets one clear error naming the input and the limit. The README's "Security" section
lists these numbers; a change here is a change there.
"""

from __future__ import annotations

# --- images (hybrid.images) -------------------------------------------------------------------------
MAX_PIXELS = 50_000_000  # an image over this is refused from its header: a 100 MP upload would eat the server
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # Pillow formats opened (JPEG: MPO too); ICO, BLP decode
# at open, whatever size their header states (a 0.6 MB ICO decoded 169 MP), and no user needs the other plugins
MAX_EXIF_TAGS, MAX_EXIF_BYTES = 1_000, 1_000_000  # an EXIF block's (or a TIFF's first) directory: tags, and bytes
# their values take; Pillow copies every tag's value, so 65,000 tags naming one 20 KB block cost 1.3 GB
MAX_JPEG_SCANS = 100  # a JPEG's scans (progressive ones use ~10): each walks the whole image again; 5,000 scans of
# a 49 MP JPEG took 27 s to decode

# --- requests to the app and the pipeline --------------------------------------------------------------
MAX_HANDS = 32  # detections kept per image (the highest-scoring); a threshold of 0 finds hundreds
MAX_EXPLAINED = 8  # Grad-CAM for at most this many hands (the best-scored)
MAX_DISPLAY_SIDE = 2048  # the app draws boxes and explanations on a copy of the photo shrunk to this longer side
THRESHOLD_RANGE = (0.01, 0.95)  # the detector threshold the app accepts (its slider's range), checked server-side
CONFIDENCE_RANGE = (0.0, 1.0)  # the classifier threshold the app accepts
MAX_UPLOAD, MAX_UPLOAD_BYTES = "60mb", 60 * 1024 * 1024
MAX_REQUEST_BODY_BYTES = MAX_UPLOAD_BYTES * 4 // 3 + 2**20  # any other request's body (a data: URL of the largest
# upload, base64, and its JSON); Gradio reads a body whole before a handler sees it
MAX_UPLOAD_REQUEST_BYTES = MAX_UPLOAD_BYTES + 2**20  # an upload request: one file of MAX_UPLOAD and its form
MAX_UPLOAD_CACHE_BYTES = 2 * 2**30  # uploads kept on disk at once; past it an upload gets HTTP 507 until the sweep
UPLOAD_SWEEP_SECONDS, UPLOAD_MAX_AGE_SECONDS = 300, 1800  # uploads older than 30 min are deleted, every 5 min
MAX_CHECKING = 8  # app requests whose inputs are checked at once; each then waits its turn for the model (one
# request at a time), so a bad input is refused without waiting behind the photos ahead of it
MAX_QUEUE = 16  # requests waiting for one of those MAX_CHECKING places at most; more are refused at once ("Queue is
# full")
DECODE_IN_TURN_PIXELS = 4_000_000  # a photo over this is decoded only when its turn for the model comes (a 48 MP
# photo is 144 MB decoded); smaller ones are decoded, and refused if broken, before waiting
MAX_SESSIONS = 200  # sessions whose page state Gradio keeps in memory (its default, 10000, grows RSS ~0.5 MB each)
MAX_REQUEST_SECONDS = 60  # wall time of one clip request; past it the request stops with one line

# --- video (hybrid.video) ------------------------------------------------------------------------------
MAX_VIDEO_SECONDS, MAX_VIDEO_FRAMES = 30, 1800  # an uploaded clip: at most this long (and MAX_UPLOAD)
MAX_VIDEO_FRAME_PIXELS = 3840 * 2160  # a frame over 4K (8.3 MP, as the header states it) is refused: decoding
# 8K frames took a 2.7 GB peak on the 2-core dev VM
VIDEO_MAX_SIDE = 1280  # decoded frames are shrunk to this longer side before anything else sees them
MAX_CLIP_PIXELS = 1800 * 1920 * 1080  # frames x stated pixels per clip: decoding costs what this counts (3.7 G)
MAX_TRACK_SAMPLES = 100_000  # samples an MP4/MOV video track may state (a frame each; FFmpeg indexes every one
# when it opens the file: a 1.3 KB MOV stating 60 M took 2.2 GB); more would be over MAX_CLIP_PIXELS anyway
MAX_AUDIO_SAMPLES = 100_000_000  # an audio track's (PCM states one per sample: 48 kHz x 30 min; FFmpeg indexes
# audio per chunk of ~1,024 samples)
MAX_MP4_BOXES = 200_000  # boxes read to find those counts (a fragmented 30 s clip has a few thousand)

# --- CLI and writers (hybrid.cli, hybrid.files, hybrid.training) --------------------------------------------
MAX_OUTPUT_STEM_BYTES = 200  # an output named after its input (`predict --save-dir`) keeps at most this much of
# the input's stem (a longer one is cut and gets a hash of the whole), so with '-N' and the suffix it stays under
# the 255 bytes a file name may have (ext4, xfs, btrfs, tmpfs); longer names fail with ENAMETOOLONG
TEMP_NAME_BYTES = 64  # the atomic writers' temporary names start with at most this much of the final name

# --- data files (hybrid.yamlfile, hybrid.data) -------------------------------------------------------------
MAX_YAML_BYTES = 256 * 1024  # a data.yaml or recipe read with hybrid.yamlfile.load_yaml: recipes are ~2 KB, LVIS's
# 1203 class names ~25 KB; PyYAML takes 2-5 s per MB of dense YAML on the 2-core dev VM (libyaml), 20 s without
MAX_YAML_DEPTH = 32  # levels of nesting in such a file (they use 3); PyYAML's composers recurse once per level

# --- model files (hybrid.detector, hybrid.classifier, hybrid.hub.read_model_json) ----------------------------
MAX_MODEL_JSON_BYTES = 4_000_000  # a model's config.json (ours are < 10 KB; ImageNet-21k's label names ~0.5 MB)
MAX_MODEL_JSON_DEPTH = 32  # levels of nesting in it (ours use 6); deeper JSON ends in RecursionError
MAX_MODEL_PARAMETERS = 200_000_000  # a network's parameters, counted before it is built (on the 'meta' device):
# every Ultralytics detection yaml fits (the largest, yolov5x-p6, has 155 M; YOLOv8x 68 M; ResNet-50 26 M)
MAX_DETECTOR_GFLOPS = 1200  # one detector forward pass at its image size: YOLOv8x 258 at 640, yolov8x-p6 1044 at 1280
MAX_CLASSIFIER_GFLOPS = 25  # one crop through the classifier (up to MAX_HANDS per photo): ResNet-50 8 at 224 px,
# 24 at 384
MAX_CLASSIFIER_INPUT = 640  # a classifier's input side (timm's eval sizes reach 448-576); 32 crops of it: 157 MB
MIN_CROP_PCT = 0.5  # the pipeline cuts crops at input side / crop_pct (timm's: 0.875-1): at most 1,280 px
MAX_WEIGHT = 1e4  # largest magnitude of any weight a model file may hold (trained ones stay far below; 3e38 -> NaN)
MAX_ACTIVATION = 2**28  # elements in any one tensor of a detector's forward pass (1 GiB in fp32); Ultralytics'
# yamls peak at 39 M (yolo26x-p6 at 1280)
# Bounds on a detector yaml's layer arguments; every Ultralytics detection yaml stays within them:
MAX_YAML_LAYERS, MAX_YAML_REPEATS = 64, 32  # rows in backbone + head, and a row's repeats (yamls: <= 43, <= 18)
MAX_YAML_CHANNELS = 2048  # a layer's stated output channels (yamls: <= 1024), before width_multiple (<= 2)
MAX_YAML_KERNEL = 7  # a convolution's kernel side (yamls: 1, 2, 3 and yolov5's 6); a 2048 kernel held both cores
MAX_YAML_POOL = 13  # a max-pool's kernel side (SPP: 5, 9, 13)
MAX_YAML_STRIDE = 4  # a stride, dilation or nn.Upsample factor (yamls: 1 and 2)
MAX_YAML_RATIO = 4.0  # a hidden-channel expansion or MLP ratio (yamls: 0.25 .. 2)

# --- push (hybrid.publish, hybrid.publish_checks) ------------------------------------------------------
PUSH_MAX_ENTRIES = 10_000  # files a model folder push looks at; a trained folder holds a few dozen
PUSH_MAX_UNPACKED_BYTES = 256 * 1024 * 1024  # unpacked from one pushed file's compressed streams to find the token
PUSH_UNPACK_DEPTH = 3  # compressed streams inside compressed streams searched; a deeper one is not unpacked
PUSH_DEEP_SCAN_BYTES = 4 * 1024 * 1024  # of each pushed file (and each unpacked layer) searched for the slower forms
# (character escapes, base64 runs decoded, small-window zlib, line-broken copies): all of a config, card, plot or
# event log, and the header of weights (a ResNet-50 safetensors header is 20 KB, YOLOv8's data.pkl < 1 MB). These
# searches cost ~0.2 s per 4 MiB of random bytes on the 2-core dev VM; tensor bytes past it get the plain forms only
PUSH_RAW_DEFLATE_SCAN_BYTES = 16 * 1024  # a binary file's first bytes tried as the start of a raw deflate stream,
# each offset (~5 us each: 0.1 s); raw deflate has no header to find it by. Past it, and in text, only offset 0
PUSH_EVENTS_FIRST_RECORD_BYTES = 4096  # the first record of a TensorBoard event file (its file_version event, ~30
# bytes) may be this long; a longer one is not an event file

# --- dataset readers and writers (hybrid.data.readers, hybrid.data.writers) ----------------------------------
# Annotation files are refused from their size (os.stat) before they are read: a sparse `truncate -s 20G` file
# would otherwise be read whole. The shared datasets' largest: a YOLO label 160 bytes, a VOC XML 763 bytes.
MAX_LABEL_FILE_BYTES = 1024 * 1024  # a YOLO label .txt (~40 bytes a box: 25,000 boxes) or a classes.txt
MAX_VOC_XML_BYTES = 1024 * 1024  # a Pascal VOC .xml (one image's boxes; labelImg writes < 5 KB)
MAX_LIST_FILE_BYTES = 128 * 1024 * 1024  # an Ultralytics image-list .txt: COCO's train2017.txt (118 k paths) is
# ~4 MB, Objects365's 1.7 M paths ~75 MB
MAX_HAGRID_JSON_BYTES = 200 * 1024 * 1024  # one HaGRID annotation JSON (a gesture's split): tens of MB upstream (v2
# carries 21 landmarks a hand); no HaGRID data is on the dev VM to measure. json.loads takes ~5-10x the file in RAM
