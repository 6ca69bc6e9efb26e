"""What every kritarunner scenario's ``__main__`` does: run it, and write what it saw (or its traceback)
to the result file that ``kritarun.run_scenario`` reads (kritarunner's exit status is unreliable)."""
import json
import os
import traceback


def report(run):
    """``run(cfg, facts)`` with the scenario's config; ``facts`` go to ``cfg["result"]`` whatever happens."""
    with open(os.environ["LF_SCENARIO_CONFIG"]) as handle:
        cfg = json.load(handle)
    facts = {}
    try:
        run(cfg, facts)
        facts["ok"] = True
    except Exception:
        facts["error"] = traceback.format_exc()
    with open(cfg["result"], "w") as handle:
        json.dump(facts, handle, indent=1)
