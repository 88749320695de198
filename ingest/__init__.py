"""crowdflow ingest: MQTT messages in, validated and normalised `domain.values.Reading`s out.

Contract: docs/messages.md. Per message: `Ingestor.feed`; on a tick: `Ingestor.expire`; the MQTT edge is in
`ingest.mqtt`.
"""

from ingest.decoder import Decoder, decode
from ingest.pipeline import Ingestor
from ingest.rejection import REASONS, Reason, Rejection
from ingest.stats import IngestStats

__all__ = ["REASONS", "Decoder", "IngestStats", "Ingestor", "Reason", "Rejection", "decode"]
