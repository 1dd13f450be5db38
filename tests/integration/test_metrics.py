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

from vitals_testlib import (SOURCE_DIR, Agent, VitalsTestCase, free_port, http_get, run_vitals,
                            wait_for)

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


