#!/usr/bin/python3
"""Drives the kiln dashboard in headless Chromium over the DevTools protocol, as a user would:
log in through the page's own form, open a job's page, watch its loss chart, then log in as
another user and open the same page. Prints one JSON object of what the DOM showed.

usage: dashboard_browser.py URL JOB_ID OWNER_TOKEN OTHER_TOKEN SCREENSHOT.png
       dashboard_browser.py --load-time URL JOB_ID TOKEN   (for scripts/bench-http.sh)
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # python3-websocket


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="kiln-chromium-")
        self.proc = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             "--remote-allow-origins=*", "--user-data-dir=" + self.profile,
             "--window-size=1366,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.time() + 60
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not start (no DevToolsActivePort)")
            time.sleep(0.1)
        port = open(port_file).read().split("\n")[0]
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def eval(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, expression, timeout_s, what):
        deadline = time.time() + timeout_s
        guarded = "(() => { try { return (%s); } catch (e) { return false; } })()" % expression
        while time.time() < deadline:
            value = self.eval(guarded)
            if value:
                return value
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout_s} s waiting for {what}")

    def close(self):
        try:
            self.ws.close()
        finally:
            self.proc.kill()
            self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)


def log_in(browser, token):
    browser.wait("!document.getElementById('login').hidden", 30, "the login form")
    browser.eval("document.getElementById('token').value = %s;"
                 "document.getElementById('login-form').requestSubmit(); true" % json.dumps(token))


def load_time(url, job, token):
    """A logged-in user opens a job's page: ms from navigation to first paint and to the loss
    chart drawn with points (Chromium's performance timing)."""
    browser = Browser()
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=url + "/")
        browser.wait("document.readyState === 'complete'", 30, "the first page")
        browser.eval("sessionStorage.setItem('kiln.token', %s); true" % json.dumps(token))
        browser.call("Page.navigate", url=f"{url}/index.html#/jobs/{job}")
        browser.wait("window.kilnFirstChartMs !== undefined", 60, "the loss chart")
        timing = json.loads(browser.eval(
            "JSON.stringify({fcp: (performance.getEntriesByName('first-contentful-paint')[0]"
            " || {}).startTime, chart: window.kilnFirstChartMs})"))
        print(json.dumps({"timing": timing}))
    finally:
        browser.close()


def services(url, token, name, screenshot):
    """A logged-in user opens the services page: prints the row of service `name` once its
    replicas are all ready (its Ready cell reads N/N), as text."""
    browser = Browser()
    out = {}
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=url + "/#/services")
        log_in(browser, token)
        out["row"] = browser.wait(
            "(() => { for (const tr of document.querySelectorAll('#service-rows tr')) {"
            " const cells = [...tr.children].map((td) => td.textContent);"
            " const ready = (cells[4] || '').split('/');"
            " if (cells[0] === %s && ready[0] === ready[1]) return cells.join(' | '); }"
            " return ''; })()" % json.dumps(name), 60, "the service's row, all ready")
        out["hidden"] = browser.eval("document.getElementById('services').hidden")
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    except Exception as e:
        out["error"] = str(e)
    finally:
        browser.close()
    print(json.dumps(out))


def sweep(url, token, job, screenshot):
    """A logged-in user opens a sweep's job page: prints its trial rows (as text, best first) and
    the best-trial line once the leaderboard is drawn."""
    browser = Browser()
    out = {}
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"{url}/#/jobs/{job}")
        log_in(browser, token)
        out["rows"] = browser.wait(
            "(() => { const rows = [...document.querySelectorAll('#trial-rows tr')]"
            ".map((tr) => [...tr.children].map((td) => td.textContent).join(' | '));"
            " return rows.length ? rows : ''; })()", 60, "the sweep's trial rows")
        out["best"] = browser.eval("document.getElementById('sweep-best').textContent")
        out["hidden"] = browser.eval("document.getElementById('sweep-part').hidden")
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
    except Exception as e:
        out["error"] = str(e)
    finally:
        browser.close()
    print(json.dumps(out))


def main():
    if sys.argv[1] == "--sweep":
        return sweep(*sys.argv[2:6])
    if sys.argv[1] == "--load-time":
        return load_time(*sys.argv[2:5])
    if sys.argv[1] == "--services":
        return services(*sys.argv[2:6])
    url, job, owner_token, other_token, screenshot = sys.argv[1:6]
    out = {}
    browser = Browser()
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=f"{url}/#/jobs/{job}")
        log_in(browser, owner_token)
        points = ("(() => { const c = document.getElementById('loss-chart');"
                  " const chart = window.Chart && Chart.getChart(c);"
                  " return chart ? chart.data.datasets.reduce((n, d) => n + d.data.length, 0)"
                  " : 0; })()")
        out["points_first"] = browser.wait(points, 90, "the loss chart's first points")
        first = out["points_first"]
        out["points_later"] = browser.wait(f"(() => {{ const n = {points}; return n > {first} ? n : 0; }})()",
                                           120, "the loss chart to grow")
        out["title"] = browser.eval("document.getElementById('job-title').textContent")
        out["state"] = browser.eval("document.getElementById('job-state').textContent")
        out["who"] = browser.eval("document.getElementById('who').textContent")
        out["cancel_visible"] = browser.eval("!document.getElementById('cancel-btn').hidden")
        out["logs_chars"] = browser.eval("document.getElementById('logs').textContent.length")
        out["url"] = browser.eval("location.href")
        out["token_in_session"] = browser.eval(
            "sessionStorage.getItem('kiln.token') === %s" % json.dumps(owner_token))
        out["token_in_local"] = browser.eval("localStorage.length")
        out["cookies"] = browser.eval("document.cookie")
        timing = browser.eval(
            "JSON.stringify({fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,"
            " chart: window.kilnFirstChartMs})")
        out["timing"] = json.loads(timing)
        shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(screenshot, "wb") as f:
            f.write(base64.b64decode(shot["data"]))

        browser.eval("document.getElementById('logout').click(); true")
        log_in(browser, other_token)
        out["refusal"] = browser.wait(
            "(() => { const b = document.getElementById('banner');"
            " return b.hidden ? '' : b.textContent; })()", 30, "a refusal")
        out["other_job_hidden"] = browser.eval("document.getElementById('job').hidden")
        out["other_who"] = browser.eval("document.getElementById('who').textContent")
    except Exception as e:  # the test prints what happened before the failure
        out["error"] = str(e)
    finally:
        browser.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
