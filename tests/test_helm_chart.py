"""What matters in the rendered Helm chart (helm/aegis-serve), checked offline.

Renders the chart with helm-python-sdk (the Helm v4 SDK through ctypes) for the default
values, every helm/values/*.yaml and a few toggles, then checks the objects the cluster
would get. Skips when the chart tools are not installed in this interpreter; run it with
the chart venv:  /work/chartvenv/bin/python -m pytest --noconftest tests/test_helm_chart.py
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("helm_python")
pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("check_chart", ROOT / "scripts" / "check_chart.py")
assert _spec and _spec.loader
check_chart = importlib.util.module_from_spec(_spec)
sys.modules["check_chart"] = check_chart
_spec.loader.exec_module(check_chart)

import helm_python  # noqa: E402

NS = check_chart.NAMESPACE
HEALTH = {
    "gateway": "aegis.embed.v1.EmbedService",
    "query": "aegis.encoder.v1.EncoderService",
    "document": "aegis.encoder.v1.EncoderService",
}
COMPONENTS = ("gateway", "query", "document")
GPU = "nvidia.com/gpu"

EXTRA_SCENARIOS: dict[str, dict[str, Any]] = {
    "linkerd": {"mesh": {"linkerd": {"enabled": True}}},
    "inline-secrets": {
        "tls": {"enabled": True, "clientAuth": True, "cert": "CERT", "key": "KEY", "ca": "CA"},
        "auth": {"enabled": True, "tokens": ["0123456789abcdef0123", "fedcba9876543210fedc"]},
        "metrics": {"enabled": False},
        "networkPolicy": {"enabled": True},
    },
    "no-hpa": {"queryPool": {"autoscaling": {"enabled": False}, "replicaCount": 3}},
}


def _values(name: str) -> dict[str, Any] | None:
    if name == "default":
        return None
    if name in EXTRA_SCENARIOS:
        return EXTRA_SCENARIOS[name]
    return check_chart.load_values_file(check_chart.VALUES_DIR / f"{name}.yaml")


SCENARIOS = [name for name, _ in check_chart.scenarios()] + list(EXTRA_SCENARIOS)


class Rendered:
    """The objects of one render, with the lookups the tests need."""

    def __init__(self, name: str) -> None:
        self.name = name
        values = _values(name)
        with helm_python.Chart.load(str(check_chart.CHART_DIR)) as chart:
            self.values = chart.merge_values(values)
        self.objects = check_chart.render_objects(values)

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, got {len(found)}"
        return found[0]

    @property
    def components(self) -> list[str]:
        """Components with a Deployment (no query pool when it is embedded in the gateway)."""
        present = {d["metadata"]["labels"]["app.kubernetes.io/component"]
                   for d in self.kind("Deployment")}  # fmt: skip
        return [c for c in COMPONENTS if c in present]

    @property
    def query_embedded(self) -> bool:
        return self.values["queryPool"].get("mode") == "embedded"

    def deployment(self, component: str) -> dict[str, Any]:
        found = [
            d
            for d in self.kind("Deployment")
            if d["metadata"]["labels"]["app.kubernetes.io/component"] == component
        ]
        assert len(found) == 1
        return found[0]

    def pod_labels(self, component: str) -> dict[str, str]:
        return self.deployment(component)["spec"]["template"]["metadata"]["labels"]

    def container(self, component: str) -> dict[str, Any]:
        containers = self.deployment(component)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    def env(self, component: str) -> dict[str, str]:
        """The container's environment, ConfigMaps (envFrom) included."""
        c = self.container(component)
        env: dict[str, str] = {}
        for src in c.get("envFrom", []):
            env.update(self.get("ConfigMap", src["configMapRef"]["name"])["data"])
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
        return env

    def component_of(self, labels: dict[str, str]) -> list[str]:
        """Components whose pods a matchLabels selector selects."""
        return [
            c
            for c in self.components
            if all(self.pod_labels(c).get(k) == v for k, v in labels.items())
        ]


@pytest.fixture(scope="module", params=SCENARIOS)
def r(request: pytest.FixtureRequest) -> Rendered:
    return Rendered(request.param)


_cache: dict[str, Rendered] = {}


def scenario(name: str) -> Rendered:
    if name not in _cache:
        _cache[name] = Rendered(name)
    return _cache[name]


def _grpc_port(c: dict[str, Any]) -> int:
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    return ports["grpc"]


# ---------------------------------------------------------------------------- GPU placement
def test_gpu_limit_only_on_document_pool(r: Rendered) -> None:
    gpu_enabled = r.values["documentPool"]["gpu"]["enabled"]
    for component in r.components:
        res = r.container(component)["resources"]
        has_gpu = GPU in res.get("limits", {})
        assert has_gpu == (component == "document" and gpu_enabled), (r.name, component)
        if has_gpu:
            count = r.values["documentPool"]["gpu"]["count"]
            assert res["limits"][GPU] == count and res["requests"][GPU] == count
            assert r.env(component)["AEGIS_DEVICE"] == "cuda"
            image = r.container(component)["image"]
            assert image.endswith("-cuda") or "@sha256:" in image
        pod = r.deployment(component)["spec"]["template"]["spec"]
        tolerations = str(pod.get("tolerations", []))
        if component != "document":
            assert GPU not in tolerations and GPU not in str(pod.get("nodeSelector", {}))
            assert r.env(component).get("AEGIS_DEVICE", "cpu") == "cpu"
    pod = r.deployment("document")["spec"]["template"]["spec"]
    if gpu_enabled:
        assert pod["nodeSelector"] and GPU in str(pod["tolerations"])
    else:
        assert GPU not in str(pod.get("nodeSelector", {})) + str(pod.get("tolerations", []))


def test_cpu_demo_requests_no_gpu_at_all() -> None:
    rendered = scenario("cpu-demo")
    assert GPU not in str(rendered.objects)
    assert rendered.env("document")["AEGIS_DEVICE"] == "cpu"


def test_query_pool_runs_onnx_and_document_pool_torch(r: Rendered) -> None:
    """ONNX gives the query student the same vectors faster; layer exit and GPUs need torch."""
    if r.query_embedded:
        assert r.env("gateway")["AEGIS_QUERY_BACKEND"] == "onnx"
    else:
        assert r.env("query")["AEGIS_BACKEND"] == "onnx"
    assert r.env("document")["AEGIS_BACKEND"] == "torch"


# ---------------------------------------------------------------------------------- probes
def test_probes_use_grpc_health_service_on_the_serving_port(r: Rendered) -> None:
    for component in r.components:
        c = r.container(component)
        port = _grpc_port(c)
        assert int(r.env(component)["AEGIS_PORT"]) == port
        for probe in ("startupProbe", "readinessProbe"):
            assert c[probe]["grpc"] == {"port": port, "service": HEALTH[component]}, probe
        live = c["livenessProbe"]
        if component == "gateway":
            # "" follows pool health on the gateway: liveness must not restart it for that.
            assert live["tcpSocket"] == {"port": "grpc"}
        else:
            assert live["grpc"] == {"port": port, "service": ""}


def test_liveness_window_outlasts_the_drain(r: Rendered) -> None:
    for component in r.components:
        c = r.container(component)
        drain = float(r.env(component)["AEGIS_SHUTDOWN_GRACE_S"]) + _prestop_seconds(c)
        live = c["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= drain, component


# ------------------------------------------------------------------- graceful termination
def _prestop_seconds(c: dict[str, Any]) -> float:
    command = c["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    return float(command[1])


def test_termination_grace_exceeds_prestop_plus_drain(r: Rendered) -> None:
    for component in r.components:
        c = r.container(component)
        grace = float(r.env(component)["AEGIS_SHUTDOWN_GRACE_S"])
        tgps = r.deployment(component)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert tgps > grace + _prestop_seconds(c), (component, tgps, grace)


def test_max_connection_age_is_set_everywhere(r: Rendered) -> None:
    for component in r.components:
        age = float(r.env(component)["AEGIS_MAX_CONNECTION_AGE_S"])
        assert 0 < age <= 3600


# --------------------------------------------------------------------------------- services
def test_services_name_grpc_ports_and_select_real_pods(r: Rendered) -> None:
    services = r.kind("Service")
    assert len(services) == len(r.components)
    for svc in services:
        component = svc["metadata"]["labels"]["app.kubernetes.io/component"]
        assert r.component_of(svc["spec"]["selector"]) == [component]
        container_ports = {p["name"] for p in r.container(component)["ports"]}
        grpc_ports = [p for p in svc["spec"]["ports"] if p["name"] == "grpc"]
        assert len(grpc_ports) == 1
        assert grpc_ports[0]["appProtocol"] == "grpc"
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in container_ports
        if component == "gateway":
            assert svc["spec"]["type"] == "ClusterIP"
            assert svc["spec"].get("clusterIP") != "None"
        else:
            assert svc["spec"]["clusterIP"] == "None"
            assert svc["metadata"]["name"].endswith("-headless")
            assert not svc["spec"].get("publishNotReadyAddresses", False)


def test_gateway_targets_the_headless_services_per_pod(r: Rendered) -> None:
    env = r.env("gateway")
    for component, var in (("query", "AEGIS_QUERY"), ("document", "AEGIS_DOCUMENT")):
        target = env[var]
        if component == "query" and r.query_embedded:
            assert target == "embedded"
            continue
        assert target.startswith("dns:///")
        host, port = target.removeprefix("dns:///").rsplit(":", 1)
        name, namespace, svc_, *_ = host.split(".")
        assert (namespace, svc_) == (NS, "svc")
        svc = r.get("Service", name)
        assert svc["spec"]["clusterIP"] == "None"
        assert r.component_of(svc["spec"]["selector"]) == [component]
        assert int(port) == _grpc_port(r.container(component))


# --------------------------------------------------------------------------- NetworkPolicy
def test_network_policies_only_let_the_gateway_reach_the_pools(r: Rendered) -> None:
    policies = r.kind("NetworkPolicy")
    if not r.values["networkPolicy"]["enabled"]:
        assert policies == []
        return
    covered = set()
    for pol in policies:
        selected = r.component_of(pol["spec"]["podSelector"]["matchLabels"])
        assert len(selected) == 1, pol["metadata"]["name"]
        component = selected[0]
        covered.add(component)
        assert pol["spec"]["policyTypes"] == ["Ingress"]
        container_ports = {p["name"] for p in r.container(component)["ports"]}
        for rule in pol["spec"]["ingress"]:
            assert {p["port"] for p in rule["ports"]} <= container_ports
            if component == "gateway" or rule["ports"] != [{"port": "grpc", "protocol": "TCP"}]:
                continue
            # A pool's gRPC port: only pods selected by the rule, and those are gateways.
            assert rule["from"], "pool gRPC port open to everyone"
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, peer
                assert r.component_of(peer["podSelector"]["matchLabels"]) == ["gateway"]
    assert covered == set(r.components)


# ----------------------------------------------------------------------------- resources
def test_every_container_has_requests_and_limits(r: Rendered) -> None:
    for d in r.kind("Deployment"):
        spec = d["spec"]["template"]["spec"]
        for c in spec["containers"] + spec.get("initContainers", []):
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][section]), (c["name"], section)


def test_pods_run_unprivileged(r: Rendered) -> None:
    for d in r.kind("Deployment"):
        spec = d["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["runAsUser"] >= 10000


def test_no_model_hub_at_run_time(r: Rendered) -> None:
    for component in r.components:
        env = r.env(component)
        assert env["HF_HUB_OFFLINE"] == "1"
        model = env.get("AEGIS_QUERY_MODEL" if component == "gateway" else "AEGIS_MODEL")
        if model is not None:
            assert model.startswith(("/", "builtin:"))
            mounts = {m["mountPath"] for m in r.container(component)["volumeMounts"]}
            if model.startswith("/") and r.values["models"]["source"] == "volume":
                assert any(model.startswith(m + "/") for m in mounts)


# ----------------------------------------------------------------------- scaling and PDBs
def test_hpa_targets_the_query_deployment(r: Rendered) -> None:
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in r.kind("HorizontalPodAutoscaler")}
    if r.query_embedded:  # the gateway runs the query model: it is what scales
        gateway = r.deployment("gateway")
        assert (gateway["metadata"]["name"] in hpas) == r.values["gateway"]["autoscaling"][
            "enabled"
        ]
        assert len(hpas) == sum(
            r.values[k]["autoscaling"]["enabled"] for k in ("gateway", "documentPool")
        )
        return
    query = r.deployment("query")
    if r.values["queryPool"]["autoscaling"]["enabled"]:
        hpa = hpas[query["metadata"]["name"]]
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert "replicas" not in query["spec"], "replicas would fight the HPA on upgrade"
    else:
        assert query["spec"]["replicas"] == r.values["queryPool"]["replicaCount"]
    document = r.deployment("document")
    doc_scaled = r.values["documentPool"]["autoscaling"]["enabled"] or r.values["documentPool"].get(
        "keda", {}
    ).get("enabled")
    if not doc_scaled:
        assert document["spec"]["replicas"] == r.values["documentPool"]["replicaCount"]
    for name in hpas:
        assert name in {d["metadata"]["name"] for d in r.kind("Deployment")}


def test_the_openai_face_is_a_named_port_when_enabled() -> None:
    gpu, default = scenario("gpu-production"), scenario("default")
    ports = {p["name"]: p["containerPort"] for p in gpu.container("gateway")["ports"]}
    assert ports["http"] == 8080 and gpu.env("gateway")["AEGIS_HTTP_PORT"] == "8080"
    service = next(s for s in gpu.kind("Service") if s["spec"].get("clusterIP") != "None"
                   and s["metadata"]["name"].endswith("gateway"))  # fmt: skip
    http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
    assert (http["port"], http["targetPort"], http["appProtocol"]) == (8080, "http", "http")
    (policy,) = [n for n in gpu.kind("NetworkPolicy") if n["metadata"]["name"].endswith("gateway")]
    assert {"port": "http", "protocol": "TCP"} in policy["spec"]["ingress"][0]["ports"]
    for c in ("query", "document"):
        assert "http" not in {p["name"] for p in gpu.container(c)["ports"]}
    assert "http" not in {p["name"] for p in default.container("gateway")["ports"]}
    assert "AEGIS_HTTP_PORT" not in default.env("gateway")


def test_keda_scales_the_gpu_pool_on_its_queue_depth() -> None:
    gpu = scenario("gpu-production")
    (so,) = gpu.kind("ScaledObject")
    document = gpu.deployment("document")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["spec"]["scaleTargetRef"]["name"] == document["metadata"]["name"]
    assert "replicas" not in document["spec"], "replicas would fight KEDA's HPA on upgrade"
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (2, 12)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    # The metric the encoders export (tests/test_observability.py scrapes it), by pool.
    assert meta["query"] == f'sum(aegis_encoder_queue_depth{{pool="document", namespace="{NS}"}})'
    assert meta["threshold"] == "1024" and meta["serverAddress"].startswith("http://")
    behavior = so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in gpu.kind("HorizontalPodAutoscaler")}
    assert document["metadata"]["name"] not in hpa_targets
    assert not scenario("default").kind("ScaledObject")


def test_mesh_global_rate_limit_is_an_envoy_filter_on_the_gateway() -> None:
    import yaml

    istio = scenario("mesh-mtls")
    (ef,) = istio.kind("EnvoyFilter")
    assert set(ef["spec"]["workloadSelector"]["labels"].items()) <= set(
        istio.pod_labels("gateway").items()
    )
    assert not set(ef["spec"]["workloadSelector"]["labels"].items()) <= set(
        istio.pod_labels("query").items()
    )
    filter_patch, vhost_patch = ef["spec"]["configPatches"]
    assert filter_patch["match"]["context"] == "SIDECAR_INBOUND"
    config = filter_patch["patch"]["value"]["typed_config"]
    assert config["rate_limited_as_resource_exhausted"] is True
    assert config["failure_mode_deny"] is False
    cluster = config["rate_limit_service"]["grpc_service"]["envoy_grpc"]["cluster_name"]
    assert cluster == "outbound|8081||ratelimit.ratelimit.svc.cluster.local"
    (action,) = vhost_patch["patch"]["value"]["rate_limits"][0]["actions"]
    assert action["request_headers"] == {"header_name": ":path", "descriptor_key": "path"}
    cm = istio.get("ConfigMap", f"{check_chart.RELEASE}-aegis-serve-ratelimit-config")
    service_config = yaml.safe_load(cm["data"]["config.yaml"])
    assert service_config["domain"] == config["domain"] == "aegis-serve"
    paths = {d["value"]: d["rate_limit"] for d in service_config["descriptors"]}
    assert paths["/aegis.embed.v1.EmbedService/Embed"] == {
        "unit": "second",
        "requests_per_unit": 2000,
    }
    assert not scenario("default").kind("EnvoyFilter")


def test_pdbs_and_spread_select_their_own_pods(r: Rendered) -> None:
    for pdb in r.kind("PodDisruptionBudget"):
        component = pdb["metadata"]["labels"]["app.kubernetes.io/component"]
        assert r.component_of(pdb["spec"]["selector"]["matchLabels"]) == [component]
    for component in r.components:
        spec = r.deployment(component)["spec"]["template"]["spec"]
        for tsc in spec.get("topologySpreadConstraints", []):
            assert r.component_of(tsc["labelSelector"]["matchLabels"]) == [component]


# ----------------------------------------------------------------- mesh, TLS, auth, OTel
def test_mesh_toggles() -> None:
    istio = scenario("mesh-mtls")
    linkerd = scenario("linkerd")
    plain = scenario("default")
    for component in COMPONENTS:
        meta = istio.deployment(component)["spec"]["template"]["metadata"]
        assert meta["labels"]["sidecar.istio.io/inject"] == "true"
        assert "terminationDrainDuration" in meta["annotations"]["proxy.istio.io/config"]
        lk = linkerd.deployment(component)["spec"]["template"]["metadata"]["annotations"]
        assert lk["linkerd.io/inject"] == "enabled"
        p = plain.deployment(component)["spec"]["template"]["metadata"]
        assert "sidecar.istio.io/inject" not in p["labels"]
        assert "linkerd.io/inject" not in p.get("annotations", {})
    (pa,) = istio.kind("PeerAuthentication")
    assert pa["spec"]["mtls"]["mode"] == "STRICT"
    assert set(pa["spec"]["selector"]["matchLabels"].items()) <= set(
        istio.pod_labels("query").items()
    )
    assert len(istio.kind("ServiceMonitor")) == 1


def test_tls_and_auth_are_files_from_secrets() -> None:
    for name in ("gpu-production", "inline-secrets"):
        rendered = scenario(name)
        env = rendered.env("gateway")
        assert env["AEGIS_TLS_CERT"] == "/etc/aegis/tls/tls.crt"
        assert env["AEGIS_TLS_CA"] == "/etc/aegis/tls/ca.crt"
        assert env["AEGIS_AUTH_TOKENS_FILE"] == "/etc/aegis/auth/tokens"
        assert env["AEGIS_AUTH_RATE_PER_S"] == "0" and env["AEGIS_AUTH_BURST"] == "20"
        spec = rendered.deployment("gateway")["spec"]["template"]["spec"]
        secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        assert set(secrets) == {"tls", "auth"}
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["tls"] == "/etc/aegis/tls" and mounts["auth"] == "/etc/aegis/auth"
        for c in spec["containers"]:
            assert all("secretKeyRef" not in str(e.get("valueFrom", {})) for e in c["env"])
        for component in ("query", "document"):
            assert "AEGIS_TLS_CERT" not in rendered.env(component)
    inline = scenario("inline-secrets")
    assert {s["type"] for s in inline.kind("Secret")} == {"kubernetes.io/tls", "Opaque"}
    assert scenario("gpu-production").kind("Secret") == []  # existing Secrets are used


def test_otlp_endpoint_reaches_every_component() -> None:
    rendered = scenario("gpu-production")
    for component in COMPONENTS:
        env = rendered.env(component)
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http")
        assert env["OTEL_SERVICE_NAME"] == f"aegis-{component}"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in scenario("default").env("gateway")


def test_config_changes_roll_the_pods() -> None:
    def checksum(values: dict[str, Any] | None) -> str:
        (dep,) = [
            o
            for o in check_chart.render_objects(values)
            if o["kind"] == "Deployment"
            and o["metadata"]["labels"]["app.kubernetes.io/component"] == "query"
        ]
        return dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(None) != checksum({"queryPool": {"batching": {"maxBatchTokens": 4096}}})


# ------------------------------------------------------------------ embedded query pool
def test_embedded_query_pool_runs_in_the_gateway() -> None:
    """queryPool.mode embedded: the gateway gets the query model (env, mount, resources,
    startup time) and no query workload is rendered at all."""
    rendered = scenario("embedded-query")
    query = rendered.values["queryPool"]
    assert rendered.components == ["gateway", "document"]
    labels = [o["metadata"].get("labels", {}) for o in rendered.objects]
    assert not [x for x in labels if x.get("app.kubernetes.io/component") == "query"]
    env = rendered.env("gateway")
    assert env["AEGIS_QUERY"] == "embedded" and env["AEGIS_QUERY_MODEL"] == query["model"]["path"]
    assert env["AEGIS_QUERY_DEVICE"] == "cpu" and env["AEGIS_QUERY_BACKEND"] == query["backend"]
    assert env["AEGIS_QUERY_THREADS"] == env["OMP_NUM_THREADS"] == str(query["threads"])
    batching = query["batching"]
    assert env["AEGIS_QUERY_MAX_BATCH_TOKENS"] == str(batching["maxBatchTokens"])
    assert env["AEGIS_QUERY_MAX_BATCH_TEXTS"] == str(batching["maxBatchTexts"])
    assert env["AEGIS_QUERY_MAX_QUEUE_TEXTS"] == str(batching["maxQueueTexts"])
    gateway = rendered.container("gateway")
    assert gateway["resources"] == query["resources"]
    startup = gateway["startupProbe"]
    assert startup["failureThreshold"] == query["probes"]["startup"]["failureThreshold"]
    mounts = {m["name"]: m["mountPath"] for m in gateway["volumeMounts"]}
    assert mounts["models"] == rendered.values["models"]["mountPath"]
    # The remote default keeps the gateway light: no model mount, its own resources.
    plain = scenario("default")
    assert "models" not in {m["name"] for m in plain.container("gateway")["volumeMounts"]}
    assert plain.container("gateway")["resources"] == plain.values["gateway"]["resources"]
    assert "AEGIS_QUERY_MODEL" not in plain.env("gateway")


# --------------------------------------------------------------------------- bad values
INVALID = sorted(check_chart.INVALID_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_bad_values_are_refused(path: Path) -> None:
    values = check_chart.load_values_file(path)
    expect = next(
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("# expect:")
    )
    with pytest.raises(helm_python.HelmError) as info:
        check_chart.validate_schema(values)
        check_chart.render(values)
    assert expect in str(info.value)


def test_auto_raised_liveness_threshold() -> None:
    objs = check_chart.render_objects({"queryPool": {"shutdownGraceSeconds": 95}})
    (dep,) = [
        o
        for o in objs
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "query"
    ]
    live = dep["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 100
    assert math.isclose(dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 110)


def test_notes_show_a_grpcurl_call() -> None:
    notes = check_chart.render(None)
    text = next(v for k, v in notes.items() if k.endswith("NOTES.txt"))
    assert "grpcurl -plaintext" in text and "aegis.embed.v1.EmbedService/Embed" in text
    embedded = check_chart.render(_values("embedded-query"))
    text = next(v for k, v in embedded.items() if k.endswith("NOTES.txt"))
    assert "query pool     embedded in the gateway" in text
    tls_notes = check_chart.render(_values("gpu-production"))
    text = next(v for k, v in tls_notes.items() if k.endswith("NOTES.txt"))
    assert "-cacert" in text and "-cert client.crt" in text and "authorization: Bearer" in text
