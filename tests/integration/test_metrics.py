"""/metrics with real Prometheus tools: `promtool check metrics` (parse + lint) on a running agent
with probes in every state, label escaping of hostile probe names, a real Prometheus server
scraping the agent and answering its query API (and evaluating docs/alerts.example.yml), the
example alert rules through `promtool check rules` / `promtool test rules`, and proof that a
scrape never runs a probe. Needs Debian's `prometheus` package (prometheus + promtool)."""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

from vitals_testlib import (SOURCE_DIR, Agent, Listener, VitalsTestCase, free_port, http_get,
                            run_vitals, wait_for)

FAKES = os.environ.get("VITALS_FAKE_PLUGIN_DIR", "")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
NEEDS_PROMTOOL = unittest.skipUnless(PROMTOOL, "needs promtool (apt-get install prometheus)")
ALERTS = os.path.join(SOURCE_DIR, "docs", "alerts.example.yml")
METRICS_DOC = os.path.join(SOURCE_DIR, "docs", "METRICS.md")

# Every family the agent owns, with its TYPE.
HOST_FAMILIES = {
    "vitals_probe_success": "gauge",
    "vitals_probe_status": "gauge",
    "vitals_probe_duration_seconds": "gauge",
    "vitals_probe_run_duration_seconds": "histogram",
    "vitals_probe_runs_total": "counter",
    "vitals_probe_timeouts_total": "counter",
    "vitals_probe_last_success_timestamp_seconds": "gauge",
    "vitals_probe_consecutive_failures": "gauge",
    "vitals_health_status": "gauge",
    "vitals_ready": "gauge",
    "vitals_build_info": "gauge",
    "vitals_config_last_reload_successful": "gauge",
    "vitals_config_last_reload_success_timestamp_seconds": "gauge",
    "vitals_plugin_load_failures_total": "counter",
    "process_start_time_seconds": "gauge",
}
# The only label names allowed anywhere: free text (messages, stages) must never be a label.
ALLOWED_LABELS = {"probe", "plugin", "tier", "state", "result", "reason", "version", "le"}


# ---------------------------------------------------------------------------------------------
# A small parser for the text exposition format 0.0.4, strict enough to catch escaping bugs.

def _parse_labels(text):
    labels, i = {}, 0
    while i < len(text):
        eq = text.index("=", i)
        name = text[i:eq]
        if not name.isidentifier():
            raise ValueError(f"bad label name {name!r} in {text!r}")
        if text[eq + 1] != '"':
            raise ValueError(f"label value not quoted in {text!r}")
        j, value = eq + 2, []
        while text[j] != '"':
            if text[j] == "\\":
                nxt = text[j + 1]
                value.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])  # KeyError: bad escape
                j += 2
            else:
                value.append(text[j])
                j += 1
        if name in labels:
            raise ValueError(f"label {name} twice in {text!r}")
        labels[name] = "".join(value)
        i = j + 1
        if i < len(text):
            if text[i] != ",":
                raise ValueError(f"expected ',' at {i} in {text!r}")
            i += 1
    return labels


def parse_exposition(text):
    """Returns (families {name: {"help", "type"}}, samples [(name, labels, value)])."""
    if not text.endswith("\n"):
        raise ValueError("exposition does not end with a newline")
    families, samples = {}, []
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6].lower(), line[7:]
            name, _, value = rest.partition(" ")
            fam = families.setdefault(name, {})
            if kind in fam:
                raise ValueError(f"second {kind} for {name}")
            fam[kind] = value
            continue
        if line.startswith("#") or not line:
            raise ValueError(f"unexpected line {line!r}")
        if "{" in line:
            name, rest = line.split("{", 1)
            labels_text, value = rest.rsplit("} ", 1)
            labels = _parse_labels(labels_text)
        else:
            name, value = line.split(" ")
            labels = {}
        samples.append((name, labels, float(value)))
    return families, samples


def series(samples, name, **match):
    return [(lab, v) for n, lab, v in samples if n == name and all(lab.get(k) == w for k, w in match.items())]


def one_value(samples, name, **match):
    found = series(samples, name, **match)
    if len(found) != 1:
        raise AssertionError(f"{len(found)} series {name}{match}, wanted exactly 1")
    return found[0][1]


# ---------------------------------------------------------------------------------------------

class MetricsTestCase(VitalsTestCase):
    def plugin_dir(self, fakes=()):
        """A private plugin dir: the built plugins plus the named fake plugins, as symlinks."""
        first = run_vitals("plugins").stdout.splitlines()[0]
        self.assertTrue(first.startswith("plugin directory: "), first)
        real = first[len("plugin directory: "):]
        d = os.path.join(self.tmp.path, "plugins")
        os.mkdir(d, 0o700)
        for name in ("tcp", "http", "exec"):
            os.symlink(os.path.join(real, name + ".so"), os.path.join(d, name + ".so"))
        for name in fakes:
            os.symlink(os.path.join(FAKES, name + ".so"), os.path.join(d, name + ".so"))
        return d

    def scrape(self, agent):
        status, body, headers = agent.get("/metrics")
        self.assertEqual(status, 200)
        return body, headers

    def promtool_clean(self, text):
        """promtool check metrics: exit 0 and not a word of lint."""
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""), text)

    def wait_metric(self, agent, predicate, what, timeout=30):
        """Scrapes until predicate(samples) holds; returns that scrape's (text, samples)."""
        def ok():
            text = self.scrape(agent)[0]
            samples = parse_exposition(text)[1]
            return predicate(samples) and (text, samples)
        return wait_for(ok, timeout, interval=0.1, what=what)


@NEEDS_PROMTOOL
@unittest.skipUnless(FAKES, "needs the fake plugins (run through ctest)")
class Exposition(MetricsTestCase):
    def test_every_state_and_plugin_is_lint_clean(self):
        dep = Listener()
        self.addCleanup(dep.close)
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {self.plugin_dir(("fake-ok", "fake-hangs", "fake-major2"))}
start_period: 0s
probes:
  dep: {{plugin: tcp, interval: 500ms, timeout: 450ms, options: {{port: {dep.port}}}}}
  self: {{plugin: http, interval: 500ms, timeout: 450ms, options: {{url: "http://127.0.0.1:@PORT@/livez"}}}}
  disk: {{plugin: exec, tier: optional, interval: 500ms, timeout: 450ms,
          options: {{command: [sh, -c, "echo 'disk \\"nearly\\" full \\\\ 91%'; exit 1"]}}}}
  gone: {{plugin: tcp, tier: optional, interval: 200ms, failure_threshold: 1,
          options: {{port: {free_port()}}}}}
  stuck: {{plugin: fake-hangs, tier: optional, interval: 1s, timeout: 200ms, isolation: thread}}
  counter: {{plugin: fake-ok, interval: 200ms}}
""")
        want = {"dep": "pass", "self": "pass", "disk": "warn", "gone": "fail", "stuck": "unknown",
                "counter": "pass"}
        plugins = {"dep": "tcp", "self": "http", "disk": "exec", "gone": "tcp", "stuck": "fake-hangs",
                   "counter": "fake-ok"}
        # A hung run is first a timed-out failure; 2*interval+timeout later, with still no result,
        # the probe is unknown (which it also is before its first result, hence the order).
        agent.wait_probe("stuck", "fail", timeout=30)
        for name, status in want.items():
            agent.wait_probe(name, status, timeout=30)
        health = agent.health()[1]
        self.assertEqual({n: p["status"] for n, p in health["probes"].items()}, want)

        # One scrape where every probe's last raw result carried its numbers (on a noisy machine a
        # run can time out while the thresholds keep the probe passing).
        numbers = {"dep": "vitals_probe_tcp_connect_seconds", "self": "vitals_probe_http_status_code",
                   "disk": "vitals_probe_exec_exit_code", "counter": "vitals_probe_fake_ok_runs"}

        def complete():
            text, headers = self.scrape(agent)
            samples = parse_exposition(text)[1]
            return all(series(samples, m, probe=p) for p, m in numbers.items()) and (text, headers)
        text, headers = wait_for(complete, 30, interval=0.1, what="a scrape with every plugin number")
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        self.promtool_clean(text)
        families, samples = parse_exposition(text)

        for name, typ in HOST_FAMILIES.items():
            self.assertIn(name, families)
            self.assertEqual(families[name].get("type"), typ, name)
            self.assertTrue(families[name].get("help"), name)
        for name, fam in families.items():  # plugin gauges too
            self.assertEqual(set(fam), {"help", "type"}, name)
            self.assertTrue(fam["help"], name)
        for name, labels, _ in samples:
            self.assertLessEqual(set(labels), ALLOWED_LABELS, name)
            if name.startswith("vitals_probe_"):
                self.assertIn(labels.get("probe"), want, name)
                self.assertEqual(labels["plugin"], plugins[labels["probe"]], name)
                self.assertIn(labels["tier"], ("critical", "optional"), name)
        self.assertNotIn("nearly", text)  # the exec message is not in the exposition at all

        for name, status in want.items():
            current = [lab["state"] for lab, v in series(samples, "vitals_probe_status", probe=name)
                       if v == 1]
            self.assertEqual(current, [status], name)
            self.assertEqual(len(series(samples, "vitals_probe_status", probe=name)), 4, name)
            self.assertEqual(one_value(samples, "vitals_probe_success", probe=name),
                             1 if status in ("pass", "warn") else 0, name)
            # Histogram and counters agree within one scrape.
            runs = sum(v for _, v in series(samples, "vitals_probe_runs_total", probe=name))
            self.assertGreaterEqual(runs, 1, name)
            self.assertEqual(one_value(samples, "vitals_probe_run_duration_seconds_count", probe=name),
                             runs, name)
            self.assertEqual(one_value(samples, "vitals_probe_run_duration_seconds_bucket", probe=name,
                                       le="+Inf"), runs, name)
            buckets = [v for _, v in series(samples, "vitals_probe_run_duration_seconds_bucket",
                                            probe=name)]
            self.assertEqual(buckets, sorted(buckets), name)
        self.assertEqual(one_value(samples, "vitals_probe_consecutive_failures", probe="gone"),
                         one_value(samples, "vitals_probe_runs_total", probe="gone", result="fail"))
        self.assertGreaterEqual(one_value(samples, "vitals_probe_timeouts_total", probe="stuck"), 1)
        self.assertEqual(one_value(samples, "vitals_probe_timeouts_total", probe="dep"), 0)
        self.assertEqual(series(samples, "vitals_probe_last_success_timestamp_seconds", probe="gone"), [])
        self.assertLess(abs(one_value(samples, "vitals_probe_last_success_timestamp_seconds", probe="dep")
                            - time.time()), 3600)

        # Plugin numbers: host-named gauges, with base-unit suffixes.
        self.assertEqual(families["vitals_probe_fake_ok_runs"], {"help": "Runs so far.", "type": "gauge"})
        self.assertGreaterEqual(one_value(samples, "vitals_probe_fake_ok_runs", probe="counter"), 1)
        self.assertEqual(one_value(samples, "vitals_probe_exec_exit_code", probe="disk"), 1)
        self.assertEqual(one_value(samples, "vitals_probe_http_status_code", probe="self"), 200)
        self.assertGreater(one_value(samples, "vitals_probe_http_request_seconds", probe="self"), 0)
        self.assertGreater(one_value(samples, "vitals_probe_tcp_connect_seconds", probe="dep"), 0)

        # Agent families.
        current = [lab["state"] for lab, v in series(samples, "vitals_health_status") if v == 1]
        self.assertEqual(current, [health["status"]])
        self.assertEqual(health["status"], "degraded")
        self.assertEqual(one_value(samples, "vitals_ready"), 1 if health["ready"] else 0)
        version = run_vitals("version").stdout.split()[1]
        self.assertEqual(series(samples, "vitals_build_info"), [({"version": version}, 1)])
        self.assertEqual(one_value(samples, "vitals_config_last_reload_successful"), 1)
        # fake-major2 is in the folder, but no probe uses it: not loaded, so not refused.
        self.assertEqual(one_value(samples, "vitals_plugin_load_failures_total", reason="abi_major"), 0)
        self.assertEqual(one_value(samples, "vitals_plugin_load_failures_total", reason="dlopen"), 0)
        start = one_value(samples, "process_start_time_seconds")
        self.assertLessEqual(start, one_value(samples, "vitals_config_last_reload_success_timestamp_seconds"))
        self.assertLess(abs(start - time.time()), 3600)

        with open(METRICS_DOC) as f:
            doc = f.read()
        for name in families:
            if not name.startswith("vitals_probe_fake_"):  # the test plugin's own gauge
                self.assertTrue(f"`{name}`" in doc, f"docs/METRICS.md does not list {name}")

        # HEAD gets the headers only.
        status, body, headers = agent.get("/metrics", method="HEAD")
        self.assertEqual((status, body), (200, ""))
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))

    def test_failed_reload_is_visible(self):
        agent = self.start_agent("listen: 127.0.0.1:@PORT@\nprobes:\n  a: {plugin: tcp, options: {port: 1}}\n")
        _, samples = parse_exposition(self.scrape(agent)[0])
        loaded_at = one_value(samples, "vitals_config_last_reload_success_timestamp_seconds")
        cfg = agent.log_path.replace(".stderr", "")
        with open(cfg, "a") as f:
            f.write("  b: {plugin: no-such-plugin}\n")
        agent.signal(signal.SIGHUP)
        text, samples = self.wait_metric(
            agent, lambda s: one_value(s, "vitals_config_last_reload_successful") == 0, "reload failure")
        self.assertEqual(one_value(samples, "vitals_config_last_reload_success_timestamp_seconds"), loaded_at)
        self.promtool_clean(text)

    def test_a_refused_plugin_is_counted_when_a_probe_uses_it(self):
        # In the folder but used by no probe: never loaded, so never refused.
        agent = self.start_agent(f"listen: 127.0.0.1:@PORT@\nplugin_dir: {self.plugin_dir(('fake-major2',))}\n"
                                 "probes:\n  a: {plugin: tcp, options: {port: 1}}\n")
        _, samples = parse_exposition(self.scrape(agent)[0])
        self.assertEqual(one_value(samples, "vitals_plugin_load_failures_total", reason="abi_major"), 0)
        with open(agent.log_path.replace(".stderr", ""), "a") as f:
            f.write("  c: {plugin: fake-major2}\n")
        agent.signal(signal.SIGHUP)  # rejected, and the refusal counted
        self.wait_metric(agent, lambda s: one_value(s, "vitals_plugin_load_failures_total", reason="abi_major") == 1
                         and one_value(s, "vitals_config_last_reload_successful") == 0, "the refusal counted")
        self.assertIn("plugin 'fake-major2' was refused (abi_major)", agent.log())


@NEEDS_PROMTOOL
class LabelEscaping(MetricsTestCase):
    NAMES = ['we"ird\\na\nme', "trailing\\", '"quoted"', "{a=\"b\"},c", "ünïcødé 名前", "tab\there"]
    YAML_KEYS = ['"we\\"ird\\\\na\\nme"', '"trailing\\\\"', "'\"quoted\"'", '"{a=\\"b\\"},c"',
                 '"ünïcødé 名前"', '"tab\\there"']

    def test_hostile_probe_names_and_messages(self):
        probes = "".join(f"  {key}: {{plugin: exec, interval: 500ms, timeout: 450ms, "
                         f"options: {{command: [true]}}}}\n" for key in self.YAML_KEYS)
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {self.plugin_dir()}
probes:
{probes}  msg:
    plugin: exec
    interval: 500ms
    timeout: 450ms
    options: {{command: [sh, -c, 'printf "%s\\n" "MARKER \\"q\\" back\\\\slash {{x=\\"y\\"}}"; exit 2']}}
""")
        self.assertEqual(set(agent.health()[1]["probes"]), set(self.NAMES) | {"msg"})
        wait_for(lambda: agent.probe("msg")["message"] == 'MARKER "q" back\\slash {x="y"}', 30,
                 what="the exec message with quotes and a backslash")
        text, samples = self.wait_metric(
            agent, lambda s: all(one_value(s, "vitals_probe_success", probe=n) == 1 for n in self.NAMES),
            "every weird probe to pass")
        self.promtool_clean(text)
        self.assertEqual({lab["probe"] for lab, _ in series(samples, "vitals_probe_success")},
                         set(self.NAMES) | {"msg"})
        self.assertIn('vitals_probe_success{probe="we\\"ird\\\\na\\nme",plugin="exec",tier="critical"} 1\n',
                      text)
        self.assertIn('{probe="trailing\\\\",', text)
        self.assertNotIn("MARKER", text)

    def test_invalid_utf8_in_a_probe_name_never_breaks_the_scrape(self):
        cfg = os.path.join(self.tmp.path, "vitals.yaml")
        port = free_port()
        with open(cfg, "wb") as f:
            f.write(b"listen: 127.0.0.1:%d\nplugin_dir: %s\nprobes:\n"
                    b"  \"bad\xffname\": {plugin: exec, interval: 500ms, timeout: 450ms,\n"
                    b"                 options: {command: [true]}}\n"
                    % (port, self.plugin_dir().encode()))
        agent = Agent(cfg, port)
        self.addCleanup(agent.stop)

        def fetch():
            with urllib.request.urlopen(agent.base + "/metrics", timeout=5) as r:
                return r.read().decode("utf-8")  # strict: raises on invalid UTF-8
        text = wait_for(lambda: "vitals_probe_duration_seconds{" in (t := fetch()) and t, 30,
                        what="a finished run")
        self.promtool_clean(text)
        _, samples = parse_exposition(text)
        self.assertEqual(one_value(samples, "vitals_probe_success", probe="bad\ufffdname"), 1)


@NEEDS_PROMTOOL
class ScrapesRunNoProbes(MetricsTestCase):
    def test_fifty_scrapes_one_run(self):
        runs = os.path.join(self.tmp.path, "runs")
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
probes:
  slow: {{plugin: exec, interval: 1h, options: {{command: [sh, -c, "echo run >> {runs}"]}}}}
""")
        agent.wait_probe("slow", "pass", timeout=30)
        for _ in range(50):
            _, samples = parse_exposition(self.scrape(agent)[0])
            self.assertEqual(one_value(samples, "vitals_probe_runs_total", probe="slow", result="pass"), 1)
        with open(runs) as f:
            self.assertEqual(f.read(), "run\n")


class Docs(unittest.TestCase):
    def test_every_shipped_plugin_number_is_documented(self):
        with open(METRICS_DOC) as f:
            doc = f.read()
        suffix = {"SECONDS": "_seconds", "BYTES": "_bytes", "RATIO": "_ratio", "COUNT": "", "INFO": ""}
        found = []
        for src in glob.glob(os.path.join(SOURCE_DIR, "plugins", "*", "*.cpp")):
            plugin = os.path.basename(os.path.dirname(src))
            with open(src) as f:
                for name, unit in re.findall(r'r\.number\("(\w+)",\s*VITALS_UNIT_(\w+)', f.read()):
                    found.append(re.sub(r"[^a-zA-Z0-9_:]", "_", f"vitals_probe_{plugin}_{name}") + suffix[unit])
        self.assertGreaterEqual(len(found), 5)
        for metric in found:
            self.assertTrue(f"| `{metric}` |" in doc, f"docs/METRICS.md does not list {metric}")


@NEEDS_PROMTOOL
class AlertRules(unittest.TestCase):
    def test_rule_file_is_valid(self):
        p = subprocess.run([PROMTOOL, "check", "rules", ALERTS], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS: 3 rules found", p.stdout)

    def test_rules_fire_exactly_when_documented(self):
        tmp = tempfile.mkdtemp(prefix="vitals-rules-")
        self.addCleanup(shutil.rmtree, tmp, True)
        labels = 'probe="db",plugin="postgres",tier="critical",instance="app:9851",job="vitals"'
        test = {
            "rule_files": [ALERTS],
            "evaluation_interval": "15s",
            "tests": [{
                "interval": "15s",
                "input_series": [
                    # passing for 1 minute, then failing
                    {"series": "vitals_probe_success{%s}" % labels, "values": "1x4 0x20"},
                    {"series": 'vitals_ready{instance="app:9851",job="vitals"}', "values": "1x4 0x30"},
                    {"series": 'vitals_config_last_reload_successful{instance="app:9851",job="vitals"}',
                     "values": "1x10 0x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "VitalsProbeFailing", "exp_alerts": []},
                    {"eval_time": "3m15s", "alertname": "VitalsProbeFailing", "exp_alerts": [{
                        "exp_labels": {"severity": "warning", "probe": "db", "plugin": "postgres",
                                       "tier": "critical", "instance": "app:9851", "job": "vitals"},
                        "exp_annotations": {
                            "summary": "vitals probe db (postgres, critical) on app:9851 failing for 2 minutes",
                            "description": "See GET /health/db on app:9851 for the failing stage and message."},
                    }]},
                    {"eval_time": "6m", "alertname": "VitalsNotReady", "exp_alerts": []},
                    {"eval_time": "6m15s", "alertname": "VitalsNotReady", "exp_alerts": [{
                        "exp_labels": {"severity": "critical", "instance": "app:9851", "job": "vitals"},
                        "exp_annotations": {
                            "summary": "vitals on app:9851 not ready for 5 minutes",
                            "description": "A probe that gates readiness has not passed; see GET /readyz?verbose."},
                    }]},
                    {"eval_time": "2m30s", "alertname": "VitalsConfigReloadFailed", "exp_alerts": []},
                    {"eval_time": "2m45s", "alertname": "VitalsConfigReloadFailed", "exp_alerts": [{
                        "exp_labels": {"severity": "warning", "instance": "app:9851", "job": "vitals"},
                        "exp_annotations": {
                            "summary": "vitals on app:9851 could not load its configuration",
                            "description": "The agent keeps running the previous configuration; "
                                           "its log says why the new one was refused."},
                    }]},
                ],
            }],
        }
        path = os.path.join(tmp, "alerts_test.yml")
        with open(path, "w") as f:
            json.dump(test, f)  # JSON is YAML
        p = subprocess.run([PROMTOOL, "test", "rules", path], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)


@unittest.skipUnless(PROMETHEUS and PROMTOOL, "needs prometheus (apt-get install prometheus)")
class RealPrometheus(MetricsTestCase):
    def start_prometheus(self, target_port):
        port = free_port()
        cfg = self.tmp.file("prometheus.yml", f"""
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {ALERTS}
scrape_configs:
  - job_name: vitals
    static_configs:
      - targets: ['127.0.0.1:{target_port}']
""")
        check = subprocess.run([PROMTOOL, "check", "config", cfg], capture_output=True, text=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        log = open(os.path.join(self.tmp.path, "prometheus.log"), "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}",
                                 f"--storage.tsdb.path={os.path.join(self.tmp.path, 'tsdb')}",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.addCleanup(stop)
        self.prom_log = log.name
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: proc.poll() is None and http_get(base + "/-/ready", timeout=1)[0] == 200, 60,
                 interval=0.2, what="prometheus to be ready")
        return base

    def prom_wait(self, predicate, what, timeout=60):
        """wait_for, adding the tail of Prometheus's log to a timeout."""
        try:
            return wait_for(predicate, timeout, interval=0.5, what=what)
        except AssertionError as e:
            with open(self.prom_log) as f:
                raise AssertionError(f"{e}\nprometheus log (tail):\n{''.join(f.readlines()[-30:])}") from None

    def api(self, base, path, **params):
        status, body, _ = http_get(base + path + "?" + urllib.parse.urlencode(params), timeout=5)
        self.assertEqual(status, 200, body)
        doc = json.loads(body)
        self.assertEqual(doc["status"], "success", body)
        return doc["data"]

    def success_by_probe(self, base):
        data = self.api(base, "/api/v1/query", query="vitals_probe_success")
        return {r["metric"]["probe"]: r["value"][1] for r in data["result"]}

    def pending_or_firing(self, base, alertname):
        return {a["labels"].get("probe", "") for a in self.api(base, "/api/v1/alerts")["alerts"]
                if a["labels"]["alertname"] == alertname}

    def test_prometheus_scrapes_and_sees_a_dependency_go_down(self):
        dep = Listener()
        self.addCleanup(dep.close)
        agent = self.start_agent(f"""
listen: 127.0.0.1:@PORT@
plugin_dir: {self.plugin_dir()}
start_period: 0s
probes:
  dep: {{plugin: tcp, interval: 500ms, timeout: 450ms, failure_threshold: 1,
         options: {{port: {dep.port}}}}}
  self: {{plugin: http, tier: optional, interval: 500ms, timeout: 450ms,
          options: {{url: "http://127.0.0.1:@PORT@/livez"}}}}
  disk: {{plugin: exec, tier: optional, interval: 500ms, timeout: 450ms,
          options: {{command: [sh, -c, "echo 'almost \\"full\\"'; exit 1"]}}}}
  gone: {{plugin: tcp, tier: optional, interval: 500ms, timeout: 450ms, failure_threshold: 1,
          options: {{port: {free_port()}}}}}
  "odd \\"name\\"\\\\\\n": {{plugin: exec, tier: optional, interval: 500ms, timeout: 450ms,
                     options: {{command: [true]}}}}
""")
        agent.wait_status("degraded", timeout=30)
        base = self.start_prometheus(agent.port)
        want = {"dep": "1", "self": "1", "disk": "1", "gone": "0", 'odd "name"\\\n': "1"}
        self.prom_wait(lambda: self.success_by_probe(base) == want,
                       f"prometheus to return vitals_probe_success {want}")
        targets = self.api(base, "/api/v1/targets")["activeTargets"]
        self.assertEqual([(t["health"], t["lastError"]) for t in targets], [("up", "")])
        ready = self.api(base, "/api/v1/query", query="vitals_ready")["result"]
        self.assertEqual([r["value"][1] for r in ready], ["1"])
        # The example alert rule sees the failing probe (pending: its for: is 2 minutes).
        alerts = self.prom_wait(lambda: "gone" in (a := self.pending_or_firing(base, "VitalsProbeFailing")) and a,
                                "VitalsProbeFailing pending for gone")
        self.assertNotIn("dep", alerts)

        dep.close()
        want["dep"] = "0"
        self.prom_wait(lambda: self.success_by_probe(base) == want, "prometheus to see dep go down")
        self.prom_wait(lambda: "dep" in self.pending_or_firing(base, "VitalsProbeFailing"),
                       "VitalsProbeFailing pending for dep")
        self.prom_wait(lambda: self.pending_or_firing(base, "VitalsNotReady") == {""}, "VitalsNotReady pending")


if __name__ == "__main__":
    unittest.main()
