"""Issue 14: the status page in a real browser. Headless Chromium (Debian's `chromium`), driven over
the DevTools protocol with Debian's python3-websocket, loads `/` from a running agent whose probes
are in pass, warn, fail and unknown; checks the rendered DOM, that no console error occurs, that the
page follows a state change without a reload, and saves a screenshot.

Both packages come from scripts/setup.sh; if either is missing this test fails (never skips)."""
import base64
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

try:
    import websocket  # python3-websocket
except ImportError:  # a Python of its own (pyenv, venv) does not see Debian's packages
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import websocket
    except ImportError:
        websocket = None

from vitals_testlib import VitalsTestCase, wait_for

FAKES = os.environ.get("VITALS_FAKE_PLUGIN_DIR", "")
SCREENSHOT = os.environ.get("VITALS_SCREENSHOT", os.path.join(tempfile.gettempdir(), "vitals-status-page.png"))


def write(path, result):
    """Replaces the fake plugin's result file at once (never seen empty)."""
    with open(path + ".tmp", "w") as f:
        f.write(result + "\n")
    os.replace(path + ".tmp", path)


class DevTools:
    """One page of a headless Chromium, over the DevTools protocol."""

    def __init__(self, test):
        if websocket is None:
            test.fail("python3-websocket is not installed (scripts/setup.sh installs it)")
        chromium = shutil.which("chromium")
        if not chromium:
            test.fail("chromium is not installed (scripts/setup.sh installs it)")
        self.profile = tempfile.mkdtemp(prefix="vitals-chromium-")
        self.proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--disable-background-networking", "--remote-debugging-port=0",
             "--remote-allow-origins=*", f"--user-data-dir={self.profile}", "--window-size=1400,400",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        wait_for(lambda: os.path.exists(port_file) and open(port_file).read().strip(), timeout=60,
                 what="chromium's DevTools port")
        port = int(open(port_file).read().split()[0])
        pages = wait_for(lambda: [t for t in json.load(urllib.request.urlopen(
            f"http://127.0.0.1:{port}/json/list", timeout=5)) if t["type"] == "page"], timeout=30,
            what="a page target")
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=30)
        self.ids = itertools.count(1)
        self.events = []
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=372, deviceScaleFactor=1,
                  mobile=False)
        self.call("Emulation.setFocusEmulationEnabled", enabled=True)  # :focus in a headless window

    def call(self, method, **params):
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def eval(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise AssertionError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def errors(self):
        """Console errors, uncaught exceptions and error log entries seen so far."""
        self.call("Runtime.evaluate", expression="0")  # collect pending events
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(("console", [a.get("value") for a in p.get("args", [])]))
            elif m == "Runtime.exceptionThrown":
                out.append(("exception", p["exceptionDetails"].get("text")))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(("log", p["entry"].get("text"), p["entry"].get("url")))
        return out

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


ROWS = """Array.from(document.querySelectorAll('#probes tr')).map(tr => [tr.dataset.probe,
  tr.querySelector('.st').textContent, tr.querySelectorAll('.runs li').length,
  !!tr.querySelector('svg.spark polyline')])"""


class StatusBrowserTest(VitalsTestCase):
    def test_page_in_chromium(self):
        flag = self.tmp.file("api.result", "pass\n")
        agent = self.start_agent(f"""listen: 127.0.0.1:@PORT@
plugin_dir: {FAKES}
start_period: 0s
probes:
  postgres: {{plugin: fake-ok, interval: 500ms, timeout: 400ms, options: {{result: {flag}, message: "PostgreSQL 15.20 at 127.0.0.1:5432 as vitals", sleep: 4ms}}}}
  ollama: {{plugin: fake-ok, tier: optional, interval: 500ms, timeout: 400ms, options: {{result: warn, message: "model nomic-embed-text pulled but not loaded", sleep: 12ms}}}}
  mcp: {{plugin: fake-ok, tier: optional, interval: 500ms, timeout: 400ms, failure_threshold: 1, options: {{result: fail, message: "unable to connect to 127.0.0.1:8931: connection refused", sleep: 2ms}}}}
  search: {{plugin: fake-ok, tier: optional, interval: 1h, timeout: 30m, options: {{sleep: 1h}}}}
""")
        agent.wait_probe("mcp", "fail")
        agent.wait_probe("ollama", "warn")
        agent.wait_probe("postgres", "pass")
        time.sleep(2)  # a few runs for the strips and sparklines
        # Two failed runs, below failure_threshold (3): the strip shows them, the status stays pass.
        write(flag, "fail")
        wait_for(lambda: [r["status"] for r in json.loads(agent.get("/health?history=2")[1])
                          ["probes"]["postgres"]["history"]] == ["fail", "fail"], timeout=10)
        write(flag, "pass")
        agent.wait_probe("postgres", "pass")
        time.sleep(2)

        browser = DevTools(self)
        self.addCleanup(browser.close)
        browser.call("Page.navigate", url=agent.base + "/")
        wait_for(lambda: browser.eval("document.readyState") == "complete", timeout=30, what="the page to load")
        # The script took over: it says it is live.
        wait_for(lambda: browser.eval("document.getElementById('conn').textContent").startswith("Live"),
                 timeout=15, what="the page to go live")
        rows = browser.eval(ROWS)
        by_name = {r[0]: r for r in rows}
        self.assertEqual(list(by_name), ["postgres", "ollama", "mcp", "search"], rows)
        self.assertEqual(by_name["postgres"][1], "\u2713 pass")
        self.assertGreaterEqual(
            browser.eval("document.querySelectorAll('[data-probe=postgres] .runs li.s-fail').length"), 2)
        self.assertEqual(by_name["ollama"][1], "! warn")
        self.assertEqual(by_name["mcp"][1], "\u2717 fail")
        self.assertEqual(by_name["search"][1], "? unknown")
        for name in ("postgres", "ollama", "mcp"):
            self.assertGreater(by_name[name][2], 1, f"{name}: marks in the run strip")
            self.assertTrue(by_name[name][3], f"{name}: a sparkline")
        self.assertEqual(by_name["search"][2], 0)
        self.assertEqual(browser.eval("document.getElementById('overall').textContent"), "! Degraded")
        self.assertEqual(browser.eval("document.getElementById('ready').textContent"), "\u2713 Ready")
        # A run mark is labelled with its status, time and message.
        tip = browser.eval("document.querySelector('[data-probe=mcp] .runs li').textContent")
        self.assertRegex(tip, r"^fail at \d\d:\d\d:\d\d UTC, [\d.]+ ms, fake: unable to connect")

        # Keyboard focus on a mark shows its label (and survives the page's refresh).
        browser.eval("document.querySelector('[data-probe=postgres] .runs li.s-fail').focus()")
        time.sleep(2.5)
        label = "document.activeElement.querySelector('.vh')"
        self.assertRegex(browser.eval(label + ".textContent"), r"^fail at .* UTC, [\d.]+ ms, fake: PostgreSQL")
        self.assertGreater(browser.eval(label + ".getBoundingClientRect().width"), 100)
        browser.call("Page.captureScreenshot", format="png")  # warm-up: fonts settle
        shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        with open(SCREENSHOT, "wb") as f:
            f.write(shot)
        print(f"screenshot: {SCREENSHOT}")
        self.assertTrue(shot.startswith(b"\x89PNG"))

        # A state change shows without a reload.
        browser.eval("window.notReloaded = true")
        write(flag, "fail")
        wait_for(lambda: dict((r[0], r[1]) for r in browser.eval(ROWS))["postgres"] == "\u2717 fail",
                 timeout=20, interval=0.2, what="the page to show postgres failing")
        wait_for(lambda: browser.eval("document.getElementById('overall').textContent") == "\u2717 Unhealthy",
                 timeout=10, interval=0.2, what="the page to show unhealthy")
        self.assertTrue(browser.eval("window.notReloaded === true"))
        self.assertEqual(browser.errors(), [])

        # The agent stops answering: the page says so, and keeps the last state.
        agent.stop()
        wait_for(lambda: "Agent not answering" in browser.eval("document.getElementById('conn').textContent"),
                 timeout=15, interval=0.2, what="the page to say the agent stopped answering")
        self.assertEqual(len(browser.eval(ROWS)), 4)


if __name__ == "__main__":
    unittest.main()
