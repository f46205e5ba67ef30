#!/usr/bin/env python3
"""compare.py: diff an Autobahn report against the committed expected results.

  compare.py REPORT_DIR EXPECTED_JSON            compare; exit 1 on a regression
  compare.py REPORT_DIR EXPECTED_JSON --update   rewrite EXPECTED_JSON from the report

REPORT_DIR is an autobahn-run output directory (index.json, wstest.log). EXPECTED_JSON is
an object {"1.1.1": "OK", ...}: one case per line, in case order, so diffs read well.

Passing means OK, NON-STRICT or INFORMATIONAL (as autobahn-run counts). Per case:
  expected passing, now not passing (FAILED, UNIMPLEMENTED, MISSING...)  regression: exit 1
  expected not passing, now passing                                     improvement: notice
  passing <-> passing (OK <-> NON-STRICT), or failing <-> failing       change: note
  not in the expected file                                              new: notice
Only the cases this run selected (wstest.log's "Cases = [...]") are compared, so a run
with a case subset (AUTOBAHN_CASES) is not punished for the rest. Cases selected but
absent from the report count as MISSING.
Exit status: 0 no regression, 1 regression, 2 unusable input (no report, no expected file).
"""
import argparse, json, os, re, sys, textwrap

PASS = ("OK", "NON-STRICT", "INFORMATIONAL")


def case_key(case_id):
    try:
        return tuple(int(x) for x in case_id.split("."))
    except ValueError:  # not a case id; sort it last rather than crash
        return (float("inf"), case_id)


def die(msg):
    print("compare.py: " + msg, file=sys.stderr)
    sys.exit(2)


def load_report(report_dir, agent):
    """{case: behavior} of the one agent in report_dir/index.json."""
    path = os.path.join(report_dir, "index.json")
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        die("no usable report %s: %s" % (path, e))
    if agent:
        if agent not in report:
            die("agent %r not in %s (agents: %s)" % (agent, path, ", ".join(report) or "none"))
        cases = report[agent]
    elif len(report) > 1:  # a stale or shared report; we cannot tell which is ours
        die("several agents in %s (%s); choose one with --agent" % (path, ", ".join(report)))
    else:  # no agent at all: nothing connected, every selected case is MISSING
        cases = next(iter(report.values()), {})
    return {c: r.get("behavior", "MISSING") for c, r in cases.items()}


def selected_cases(report_dir):
    """The case ids wstest announced for this run, or None if it did not say."""
    try:
        with open(os.path.join(report_dir, "wstest.log")) as f:
            m = re.search(r"^Cases = \[(.*)\]$", f.read(), re.M)
    except OSError:
        return None
    return re.findall(r"'([\d.]+)'", m.group(1)) if m else None


def load_expected(path):
    try:
        with open(path) as f:
            expected = json.load(f)
    except ValueError as e:
        die("%s is not valid JSON: %s" % (path, e))
    if not isinstance(expected, dict) or not all(isinstance(v, str) for v in expected.values()):
        die('%s must be a JSON object {"case": "BEHAVIOR", ...}' % path)
    return expected


def write_expected(path, results):
    ordered = {c: results[c] for c in sorted(results, key=case_key)}
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(ordered, indent=2) + "\n")  # indent: one case per line
    os.replace(tmp, path)


def show(title, pairs):
    """Print cases grouped by (expected, actual) transition, wrapped."""
    groups = {}
    for c, exp, act in pairs:
        groups.setdefault((exp, act), []).append(c)
    print(title)
    for (exp, act), ids in sorted(groups.items()):
        head = "  %s -> %s (%d): " % (exp or "(none)", act, len(ids))
        print(textwrap.fill(" ".join(ids), width=100, initial_indent=head,
                            subsequent_indent=" " * 6, break_on_hyphens=False))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report_dir")
    ap.add_argument("expected")
    ap.add_argument("--update", action="store_true",
                    help="rewrite EXPECTED from the report (cases not run this time are kept)")
    ap.add_argument("--agent", help="agent in index.json (default: the only one)")
    a = ap.parse_args()

    results = load_report(a.report_dir, a.agent)
    selected = selected_cases(a.report_dir)
    if selected is not None:
        actual = {c: results.get(c, "MISSING") for c in selected}
        actual.update(results)  # anything reported but not announced, too
    else:
        actual = dict(results)
    exists = os.path.exists(a.expected)

    if a.update:
        merged = load_expected(a.expected) if exists else {}
        kept = len(set(merged) - set(actual))
        merged.update(actual)
        write_expected(a.expected, merged)
        npass = sum(b in PASS for b in actual.values())
        print("compare.py: wrote %s: %d cases from this run (%d passing, %d not)%s"
              % (a.expected, len(actual), npass, len(actual) - npass,
                 ", %d kept from before (not run this time)" % kept if kept else ""))
        return 0

    if not exists:
        die("no expected results: %s does not exist.\n  Record this run's results with "
            "--update (e2e/autobahn/run.sh MODE --update), review the file and commit it."
            % a.expected)
    expected = load_expected(a.expected)
    # Without the run's case list, every expected case must be there.
    scope = set(actual) if selected is not None else set(actual) | set(expected)
    regressions, improvements, changes, new = [], [], [], []
    for c in sorted(scope, key=case_key):
        exp, act = expected.get(c), actual.get(c, "MISSING")
        if exp is None:
            new.append((c, exp, act))
        elif exp == act:
            continue
        elif exp in PASS and act not in PASS:
            regressions.append((c, exp, act))
        elif exp not in PASS and act in PASS:
            improvements.append((c, exp, act))
        else:
            changes.append((c, exp, act))
    not_run = len(set(expected) - scope)

    if changes:
        show("note: behavior changed, same pass/fail outcome:", changes)
    if new:
        show("notice: cases not in %s (run with --update to record them):" % a.expected, new)
    if improvements:
        show("notice: IMPROVED, expected to fail and now passing; record it with --update "
             "(e2e/autobahn/run.sh MODE --update) and commit %s:"
             % os.path.basename(a.expected), improvements)
    if regressions:
        show("REGRESSION: expected to pass, now not passing:", regressions)
    print("compare: %d cases vs %s: %d regressions, %d improvements, %d changes, %d new%s"
          % (len(scope), os.path.basename(a.expected), len(regressions), len(improvements),
             len(changes), len(new), "; %d expected cases not run" % not_run if not_run else ""))
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
