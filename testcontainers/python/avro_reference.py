"""Apache Avro's reference compatibility checker (the Python port of Java's SchemaCompatibility).

Reads a JSON list of {"writer": <schema>, "reader": <schema>} from stdin and prints a JSON list with,
for each pair, whether a reader with the reader schema can read every datum written with the writer
schema, and the checker's reasons when it cannot.
"""
import json
import sys

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType


def main():
    pairs = json.load(sys.stdin)
    out = []
    for pair in pairs:
        writer = avro.schema.parse(json.dumps(pair["writer"]))
        reader = avro.schema.parse(json.dumps(pair["reader"]))
        result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
        out.append({
            "compatible": result.compatibility == SchemaCompatibilityType.compatible,
            "reasons": sorted(str(m) for m in result.messages),
        })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
