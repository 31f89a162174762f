"""Label Studio: the label config, pure percent<->pixel converters, the server, push/pull sync.

Imports `db` only; `annotations/client.py` is the only module that imports label_studio_sdk.
"""
from pathlib import Path

LABEL_CONFIG = Path(__file__).with_name("label_config.xml")
SAMPLE_BOXES = Path(__file__).with_name("sample_boxes.json")
