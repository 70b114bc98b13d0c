"""deploy/: every manifest parses, every kustomization renders, every object validates against
its schema (Kubernetes' own for core kinds, the committed CRD schemas for the rest), and the
pieces agree with each other and with `tealight serve`. No cluster involved."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
BINARY = ROOT / "target" / "debug" / "tealight"
# The oldest Kubernetes the manifests are meant for (gRPC probes, autoscaling/v2) and the newest
# kubernetes-validate knows.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
CRD_SCHEMAS = {
    ("inference.networking.k8s.io/v1", "InferencePool"): "inferencepool-v1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-v1.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-v1alpha1.json",
}
KUSTOMIZATIONS = sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def tool(name: str) -> str:
    """A command from this test's virtual environment (where requirements.txt put it)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    assert found, f"{name} is not installed (tests/clients/requirements.txt)"
    return found


def render(directory: Path) -> list[dict]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert out.returncode == 0, f"kustomize {directory}: {out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {str(d.relative_to(DEPLOY)): render(d) for d in KUSTOMIZATIONS}


def objects(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def check_custom(docs: list[dict], tmp_path: Path) -> subprocess.CompletedProcess:
    """check-jsonschema on each custom resource, grouped by schema; the last failure or an ok."""
    by_schema: dict[str, list[Path]] = {}
    for i, doc in enumerate(docs):
        schema = CRD_SCHEMAS[(doc["apiVersion"], doc["kind"])]
        path = tmp_path / f"{i}-{doc['kind']}.yaml"
        path.write_text(yaml.safe_dump(doc))
        by_schema.setdefault(schema, []).append(path)
    result = None
    for schema, files in by_schema.items():
        result = subprocess.run(
            [tool("check-jsonschema"), "--schemafile", str(SCHEMAS / schema), *map(str, files)],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode != 0:
            return result
    assert result is not None
    return result


def validate_core(doc: dict) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_file_parses_into_named_objects():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 15, files
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs, f"{path} is empty"
        for doc in docs:
            if path.name == "deployment-patch.yaml":
                assert isinstance(doc, list) and all("op" in op for op in doc)
                continue
            assert {"apiVersion", "kind"} <= doc.keys(), path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path


def test_every_object_validates_against_its_schema(rendered, tmp_path):
    custom = []
    seen_kinds = set()
    for docs in rendered.values():
        for doc in docs:
            seen_kinds.add(doc["kind"])
            if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
                custom.append(doc)
            else:
                # Raises SchemaNotFoundError for a kind without a schema: nothing goes unchecked.
                validate_core(doc)
    assert {
        "Deployment", "Service", "PersistentVolumeClaim", "HorizontalPodAutoscaler",
        "ConfigMap", "ServiceAccount", "Role", "RoleBinding",
        "InferencePool", "HTTPRoute", "ScaledObject",
    } <= seen_kinds
    result = check_custom(custom, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_checks_catch_mistakes(rendered, tmp_path):
    docs = rendered["."]
    # InferencePool v1 renamed extensionRef (v1alpha2) to endpointPickerRef.
    pool = json.loads(json.dumps(one(docs, "InferencePool", "tealight")))
    pool["spec"]["extensionRef"] = pool["spec"].pop("endpointPickerRef")
    result = check_custom([pool], tmp_path)
    assert result.returncode != 0 and "extensionRef" in result.stdout, result.stdout
    pool = json.loads(json.dumps(one(docs, "InferencePool", "tealight")))
    pool["spec"]["targetPorts"] = [{"number": 70000}]
    assert check_custom([pool], tmp_path).returncode != 0
    scaled = json.loads(json.dumps(one(docs, "ScaledObject", "tealight")))
    scaled["spec"]["maxReplicas"] = 8
    assert check_custom([scaled], tmp_path).returncode != 0

    deployment = json.loads(json.dumps(one(docs, "Deployment", "tealight")))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 50
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(deployment)
    deployment = json.loads(json.dumps(one(docs, "Deployment", "tealight")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "port"] = ["http"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_core(deployment)


def serve_args(container: dict) -> dict[str, str]:
    """`--flag value` pairs of a `tealight serve` container (flags without a value map to '')."""
    args = container["args"]
    assert args[0] == "serve", args
    flags: dict[str, str] = {}
    i = 1
    while i < len(args):
        assert args[i].startswith("--"), args[i]
        has_value = i + 1 < len(args) and not args[i + 1].startswith("--")
        flags[args[i]] = args[i + 1] if has_value else ""
        i += 2 if has_value else 1
    return flags


@pytest.mark.parametrize("variant", ["base", "cpu"])
def test_model_server_drains_within_its_grace_period(rendered, variant):
    deployment = one(rendered[variant], "Deployment", "tealight")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    flags = serve_args(container)
    shutdown = int(flags.get("--shutdown-timeout", "30"))
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # tealight: --shutdown-timeout for running requests, then up to 5 s for open streams.
    assert pod["terminationGracePeriodSeconds"] > int(pre_stop[1]) + shutdown + 5


@pytest.mark.parametrize("variant", ["base", "cpu"])
def test_probes_ports_and_selectors_agree(rendered, variant):
    docs = rendered[variant]
    deployment = one(docs, "Deployment", "tealight")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    flags = serve_args(container)
    (port,) = container["ports"]
    assert port["containerPort"] == int(flags["--port"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": port["name"]}, probe
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = one(docs, "Service", "tealight")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    claim = one(docs, "PersistentVolumeClaim", "tealight-models")
    (volume,) = pod["spec"]["volumes"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    mount = container["volumeMounts"][0]["mountPath"]
    assert flags["--model"].startswith(mount + "/")
    if variant == "base":
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    else:
        assert "nvidia.com/gpu" not in json.dumps(container["resources"])
        assert container["image"].endswith(":cpu")


def test_inference_gateway_wiring(rendered):
    docs = rendered["."]
    pod = one(docs, "Deployment", "tealight")["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    pool = one(docs, "InferencePool", "tealight")
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pool["spec"]["targetPorts"] == [{"number": int(serve_args(container)["--port"])}]
    epp = one(docs, "Deployment", "tealight-epp")
    epp_labels = epp["spec"]["template"]["metadata"]["labels"]
    assert not pool["spec"]["selector"]["matchLabels"].items() <= epp_labels.items(), \
        "the pool must not select the picker's own pods"
    ref = pool["spec"]["endpointPickerRef"]
    epp_service = one(docs, "Service", ref["name"])
    assert ref["port"]["number"] in [p["port"] for p in epp_service["spec"]["ports"]]
    assert epp_service["spec"]["selector"].items() <= epp_labels.items()
    (epp_container,) = epp["spec"]["template"]["spec"]["containers"]
    args = epp_container["args"]
    assert args[args.index("--pool-name") + 1] == pool["metadata"]["name"]
    config_path = Path(args[args.index("--config-file") + 1])
    config_map = one(docs, "ConfigMap", epp["spec"]["template"]["spec"]["volumes"][0]
                     ["configMap"]["name"])
    assert config_path.name in config_map["data"]
    picker = yaml.safe_load(config_map["data"][config_path.name])
    assert picker["kind"] == "EndpointPickerConfig"
    refs = {p["pluginRef"] for p in picker["schedulingProfiles"][0]["plugins"]}
    assert refs == {p["type"] for p in picker["plugins"]}
    route = one(docs, "HTTPRoute", "tealight")
    (backend,) = route["spec"]["rules"][0]["backendRefs"]
    assert (backend["kind"], backend["name"]) == ("InferencePool", pool["metadata"]["name"])
    scaled = one(docs, "ScaledObject", "tealight")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "tealight"


def test_every_serve_flag_in_the_manifests_exists():
    """The binary's own --help, so a renamed flag cannot leave the manifests stale."""
    assert BINARY.exists(), "build first (cargo test builds target/debug/tealight)"
    help_text = subprocess.run([str(BINARY), "serve", "--help"], capture_output=True,
                               text=True, timeout=60, check=True).stdout
    known = set(re.findall(r"--[a-z0-9-]+", help_text))
    for variant in ("base", "cpu"):
        (container,) = one(render(DEPLOY / variant), "Deployment", "tealight")["spec"][
            "template"]["spec"]["containers"]
        unknown = set(serve_args(container)) - known
        assert not unknown, f"{variant}: {unknown}"
