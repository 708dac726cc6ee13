"""Parses an OpenMetrics text exposition from stdin with the reference
parser (prometheus_client.openmetrics.parser, strict: it requires `# EOF`,
counters' `_total` samples, valid names and label escapes) and prints the
families as JSON: [{"name", "type", "samples": [{"name", "labels",
"value"}]}]. A parse error exits non-zero with the parser's message.

Debian: python3-prometheus-client (.ci/run installs it).
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

families = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families.append({
        "name": family.name,
        "type": family.type,
        "samples": [
            {
                "name": s.name,
                "labels": s.labels,
                # JSON has no infinity: the +Inf bucket bound is a label,
                # values are finite in practice; say so if not.
                "value": s.value if math.isfinite(s.value) else str(s.value),
            }
            for s in family.samples
        ],
    })
json.dump(families, sys.stdout)
