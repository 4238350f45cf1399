"""Every way a window can fail: no report on stdout, one line on stderr, no traceback, non-zero exit."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from cluster_exporter.devtools.demo import demo_namespaces
from cluster_exporter.devtools.kubeapi_standin import KubeApiStandIn, KubeState, write_kubeconfig
from cluster_exporter.devtools.prometheus_server import PrometheusServer, free_port
from cluster_exporter.devtools.synthetic_cluster import CUSTOMER_LABEL, Cluster

GOOD_END = "2025-11-20T02:00:00Z"


class BadPrometheus:
    """A loopback server answering every PromQL query the way ``mode`` says."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hits = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        if self.mode == "503":
            return web.Response(status=503, text="upstream overloaded")
        if self.mode == "400":
            return web.json_response({"status": "error", "errorType": "bad_data", "error": "parse error"}, status=400)
        if self.mode == "html":
            return web.Response(status=200, text="<html>login required</html>", content_type="text/html")
        if self.mode == "truncated":
            return web.Response(
                status=200,
                text='{"status":"success","data":{"resultType":"vector","resu',
                content_type="application/json",
            )
        if self.mode == "cut":  # a few series, then the connection drops mid-answer
            resp = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "100000"})
            await resp.prepare(request)
            expr = str((await request.post())["query"])
            if expr.endswith("]") and "(" not in expr:  # a range selector: a matrix
                item = '{"metric":{"namespace":"a"},"values":[[1,"2"]]}'
                head = '{"status":"success","data":{"resultType":"matrix","result":['
            else:
                item = '{"metric":{"namespace":"a"},"value":[1,"2"]}'
                head = '{"status":"success","data":{"resultType":"vector","result":['
            await resp.write((head + item + "," + item).encode())
            assert request.transport is not None
            request.transport.close()
            return resp
        if self.mode == "nan":
            expr = str((await request.post())["query"])
            if expr.endswith("]") and "(" not in expr:  # a range selector: a matrix
                data = {"resultType": "matrix", "result": [{"metric": {"namespace": "a"}, "values": [[1, "NaN"]]}]}
            else:
                data = {"resultType": "vector", "result": [{"metric": {"namespace": "a"}, "value": [1, "NaN"]}]}
            return web.json_response({"status": "success", "data": data})
        if self.mode == "numbers":  # raw samples whose values are JSON numbers, not the API's strings
            expr = str((await request.post())["query"])
            if expr.endswith("]") and "(" not in expr:  # a range selector: a matrix
                data = {"resultType": "matrix", "result": [{"metric": {"namespace": "a"}, "values": [[1, 2]]}]}
            else:
                data = {"resultType": "vector", "result": [{"metric": {"namespace": "a"}, "value": [1, "0"]}]}
            return web.json_response({"status": "success", "data": data})
        if self.mode == "warnings":
            body = {
                "status": "success",
                "warnings": ["partial response: store 2 unreachable"],
                "data": {"resultType": "vector", "result": []},
            }
            return web.json_response(body)
        raise AssertionError(self.mode)

    def start(self) -> BadPrometheus:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            app = web.Application()
            app.router.add_post("/api/v1/query", self.handle)
            runner = web.AppRunner(app)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)
        return self


@pytest.fixture(scope="module")
def bad_prometheus() -> BadPrometheus:
    return BadPrometheus().start()


@pytest.fixture(scope="module")
def kube_thread(cluster: Cluster) -> Iterator[KubeApiStandIn]:
    standin = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster))).start_in_thread()
    yield standin
    standin.stop_thread()


def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "KUBERNETES_", "METERING_"))}
    full_env.update({"PROMETHEUS_ATTEMPTS": "2", **(env or {})})
    proc = subprocess.run(
        [sys.executable, "-m", "cluster_exporter.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr


def report_args(prometheus_url: str, kubeconfig: Path, window_end: str = GOOD_END) -> list[str]:
    return [
        "report",
        "--dry-run",
        "--window-end",
        window_end,
        "--prometheus-url",
        prometheus_url,
        "--kubeconfig",
        str(kubeconfig),
        "--cluster-id",
        "k8s-test",
        "--customer-label",
        CUSTOMER_LABEL,
    ]


def assert_clean_failure(code: int, out: str, err: str, exit_code: int, message: str) -> None:
    assert code == exit_code, err
    assert out == "", "nothing on stdout when the window fails"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert message in lines[0], lines[0]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("503", "HTTP 503"),
        ("400", "bad_data"),
        ("html", "not JSON"),
        ("truncated", "not JSON"),
        ("cut", "answer cut off after 2 series"),
        ("nan", "non-finite"),
        ("numbers", "malformed sample"),
        ("warnings", "partial answer"),
    ],
)
def test_prometheus_answering_garbage_fails_the_window(
    bad_prometheus: BadPrometheus, kube_thread: KubeApiStandIn, tmp_path: Path, mode: str, message: str
) -> None:
    bad_prometheus.mode = mode
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_thread.url)
    assert_clean_failure(*run_cli(*report_args(bad_prometheus.url, kubeconfig)), exit_code=1, message=message)


def test_503_is_retried(bad_prometheus: BadPrometheus, kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    bad_prometheus.mode = "503"
    before = bad_prometheus.hits
    code, _, err = run_cli(*report_args(bad_prometheus.url, write_kubeconfig(tmp_path / "k", kube_thread.url)))
    assert code == 1 and "gave up after 2 attempts" in err
    assert bad_prometheus.hits - before >= 2


def test_prometheus_unreachable(kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_thread.url)
    assert_clean_failure(*run_cli(*report_args(closed, kubeconfig)), exit_code=1, message="cannot reach")


def test_kubernetes_api_failing(prometheus: PrometheusServer, cluster: Cluster, tmp_path: Path) -> None:
    standin = KubeApiStandIn(KubeState(namespaces=demo_namespaces(cluster), fail_status=500)).start_in_thread()
    try:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", standin.url)
        assert_clean_failure(
            *run_cli(*report_args(prometheus.url, kubeconfig)), exit_code=1, message="listing namespaces: HTTP 500"
        )
    finally:
        standin.stop_thread()


def test_kubernetes_api_unreachable(prometheus: PrometheusServer, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{free_port()}")
    assert_clean_failure(
        *run_cli(*report_args(prometheus.url, kubeconfig)), exit_code=1, message="cannot reach the Kubernetes API"
    )


def test_kubeconfig_missing(prometheus: PrometheusServer, tmp_path: Path) -> None:
    assert_clean_failure(
        *run_cli(*report_args(prometheus.url, tmp_path / "nope")), exit_code=1, message="does not exist"
    )


def test_no_kubeconfig_outside_a_pod(prometheus: PrometheusServer) -> None:
    args = report_args(prometheus.url, Path("unused"))
    i = args.index("--kubeconfig")
    del args[i : i + 2]
    env = {"KUBECONFIG": "", "KUBERNETES_SERVICE_HOST": ""}
    assert_clean_failure(*run_cli(*args, env=env), exit_code=1, message="not running in a pod")


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-40T00:00:00Z", "2025-11-20T02:00:00"])
def test_window_end_not_a_time_is_a_usage_error(prometheus: PrometheusServer, tmp_path: Path, bad: str) -> None:
    code, out, err = run_cli(*report_args(prometheus.url, tmp_path / "k", window_end=bad))
    assert_clean_failure(code, out, err, exit_code=2, message=bad)


def test_window_end_not_on_the_hour(prometheus: PrometheusServer, kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_thread.url)
    code, out, err = run_cli(*report_args(prometheus.url, kubeconfig, window_end="2025-11-20T02:30:00Z"))
    assert_clean_failure(code, out, err, exit_code=2, message="whole hour")


def test_unknown_flag_is_a_usage_error() -> None:
    code, out, err = run_cli("report", "--window-end", GOOD_END, "--frobnicate")
    assert_clean_failure(code, out, err, exit_code=2, message="unrecognized arguments")


def test_bad_setting_is_a_usage_error(tmp_path: Path) -> None:
    code, out, err = run_cli("report", "--window-end", GOOD_END, env={"METERING_MAX_GAP": "10m"})
    assert_clean_failure(code, out, err, exit_code=2, message="max_gap")


def test_no_samples_in_window_is_a_broken_pipeline(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, tmp_path: Path
) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_thread.url)
    code, out, err = run_cli(*report_args(prometheus.url, kubeconfig, window_end="2025-11-19T10:00:00Z"))
    assert_clean_failure(code, out, err, exit_code=4, message="no container samples")


def test_window_in_the_future(prometheus: PrometheusServer, kube_thread: KubeApiStandIn, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_thread.url)
    code, out, err = run_cli(*report_args(prometheus.url, kubeconfig, window_end="2099-01-01T00:00:00Z"))
    assert_clean_failure(code, out, err, exit_code=3, message="in the future")


def test_success_prints_one_json_report(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, tmp_path: Path
) -> None:
    import json

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_thread.url)
    code, out, err = run_cli(*report_args(prometheus.url, kubeconfig))
    assert code == 0, err
    report = json.loads(out)
    assert report["window_start"] == "2025-11-20T01:00:00Z" and report["window_end"] == GOOD_END
    assert report["cluster_id"] == "k8s-test"
    assert [u["customer_id"] for u in report["usage"]] == [
        "cust_acme",
        "cust_globex",
        "cust_hooli",
        "cust_initech",
        "cust_umbrella",
    ]


def test_settings_from_the_environment(
    prometheus: PrometheusServer, kube_thread: KubeApiStandIn, tmp_path: Path
) -> None:
    import json

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_thread.url)
    env = {
        "PROMETHEUS_URL": prometheus.url,
        "KUBECONFIG": str(kubeconfig),
        "INSTANCE_ID": "from-env",
        "CUSTOMER_LABEL": CUSTOMER_LABEL,
    }
    code, out, err = run_cli("report", "--dry-run", "--window-end", GOOD_END, env=env)
    assert code == 0, err
    assert json.loads(out)["cluster_id"] == "from-env"
