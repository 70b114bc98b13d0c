#!/usr/bin/env python3
"""Turns a CustomResourceDefinition into a strict JSON Schema for one of its versions.

    python3 scripts/deploy/crd_schema.py CRD.yaml VERSION > tests/deploy/schemas/KIND-VERSION.json

The API server prunes unknown fields of a custom resource without complaint, so a typo in a
manifest would go unnoticed; the schema written here rejects them instead (every object that
lists its properties gets `additionalProperties: false`, unless the CRD marks it
`x-kubernetes-preserve-unknown-fields`). Descriptions are dropped; `nullable` becomes a
`null` type. The CEL rules (`x-kubernetes-validations`) are the API server's and stay unchecked.
"""

import json
import sys

import yaml


def strict(node):
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items() if key != "description"}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    is_object = out.get("type") == "object" or (
        isinstance(out.get("type"), list) and "object" in out["type"]
    )
    if (
        is_object
        and "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def main() -> None:
    path, version = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        crd = yaml.safe_load(f)
    spec = crd["spec"]
    (entry,) = [v for v in spec["versions"] if v["name"] == version]
    schema = strict(entry["schema"]["openAPIV3Schema"])
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema["title"] = f"{spec['names']['kind']} {spec['group']}/{version}"
    # apiVersion and kind are free strings in a CRD; pin them to this resource.
    schema["properties"]["apiVersion"] = {"const": f"{spec['group']}/{version}"}
    schema["properties"]["kind"] = {"const": spec["names"]["kind"]}
    schema.setdefault("required", [])
    schema["required"] = sorted(set(schema["required"]) | {"apiVersion", "kind", "metadata"})
    json.dump(schema, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
