#!/usr/bin/env bash
# Checks the shipped alert rules and dashboards without a cluster:
# `promtool check rules` and `promtool test rules` (every alert has a unit
# test that shows it firing), every alert has summary, description and a
# runbook_url whose anchor is a heading of docs/OPERATIONS.md, and every
# dashboard is JSON with a uid and only Prometheus targets. The queries
# themselves are evaluated against a real Prometheus and cluster by the
# end-to-end test tests/e2e/dashboards_and_alerts_query_what_the_cluster_exports.rs.
# Run by scripts/test.sh (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=charts/cairn-operator/monitoring

echo "promtool: $(promtool --version 2>&1 | head -1)"
promtool check rules "$dir/alerts.yaml"
(cd "$dir" && promtool test rules alerts.test.yaml)

python3 - "$dir" <<'PY'
import json, pathlib, re, sys
d = pathlib.Path(sys.argv[1])
failures = []

def headings(md):
    # GitHub's anchors: lower case, spaces to '-', punctuation dropped.
    out = set()
    for line in md.splitlines():
        m = re.match(r"^#+\s+(.*)$", line)
        if m:
            a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(a)
    return out

anchors = headings(pathlib.Path("docs/OPERATIONS.md").read_text())
rules = d.joinpath("alerts.yaml").read_text()
tests = d.joinpath("alerts.test.yaml").read_text()
# A minimal reader for the rules file's shape (PyYAML is not assumed).
alerts = re.findall(r"^\s*- alert:\s*(\S+)", rules, re.M)
if not alerts:
    failures.append("no alerts in alerts.yaml")
blocks = re.split(r"^\s*- alert:\s*", rules, flags=re.M)[1:]
for name, block in zip(alerts, blocks):
    for field in ("summary:", "description:", "runbook_url:", "severity:"):
        if field not in block:
            failures.append(f"{name}: no {field[:-1]}")
    m = re.search(r'runbook_url:\s*"[^"#]*docs/OPERATIONS\.md#([^"]+)"', block)
    if not m:
        failures.append(f"{name}: runbook_url does not point into docs/OPERATIONS.md")
    elif m.group(1) not in anchors:
        failures.append(f"{name}: runbook anchor #{m.group(1)} is not a heading of docs/OPERATIONS.md")
    if not re.search(rf"alertname:\s*{re.escape(name)}\s*\n\s*exp_alerts:\s*\n\s*- exp_labels", tests):
        failures.append(f"{name}: alerts.test.yaml never shows it firing")

boards = sorted(d.joinpath("dashboards").glob("*.json"))
if len(boards) < 5:
    failures.append(f"expected the five dashboards, found {len(boards)}")
uids = set()
for b in boards:
    try:
        j = json.loads(b.read_text())
    except ValueError as e:
        failures.append(f"{b.name}: not JSON: {e}")
        continue
    if not j.get("uid") or j["uid"] in uids:
        failures.append(f"{b.name}: missing or duplicate uid")
    uids.add(j.get("uid"))
    def walk(panels):
        for p in panels:
            yield p
            yield from walk(p.get("panels", []))
    for p in walk(j.get("panels", [])):
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            failures.append(f"{b.name}: panel {p.get('title')!r} has no query")
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            failures.append(f"{b.name}: panel {p.get('title')!r} has no unit")
print(f"monitoring: {len(alerts)} alerts with runbooks and firing tests, {len(boards)} dashboards")
if failures:
    print("\n".join("FAIL " + f for f in failures))
    sys.exit(1)
PY
