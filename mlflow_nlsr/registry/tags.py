"""Tag keys NLSR reads and writes on registry entities (one place, so nobody misspells them)."""

from __future__ import annotations

FORMAT = "nlsr.format"  # LoggedModel tag: hf_dir | peft_adapter
FORMAT_HF_DIR = "hf_dir"
FORMAT_PEFT = "peft_adapter"
STATUS = "nlsr.status"  # source version: queued | running | ... | rejected | failed | skipped
REALIGNED = "nlsr.realigned"  # "true" on versions NLSR registered itself (loop prevention)
REALIGNED_VERSION = "nlsr.realigned_version"
SOURCE_VERSION = "nlsr.source_version"
BASE_URI = "nlsr.base_uri"
ALIGNED_URI = "nlsr.aligned_uri"
CONFIG = "nlsr.config"
