"""Re-blend while dragging in real Krita 5.1 (kritarunner), against a live tiny backend whose served model
is taken as step-distilled (``--fast-family lightning``), so the docker offers Fast."""
from __future__ import annotations

import pytest

from tests.krita.kritarun import run_scenario
from tests.support.backend_process import BackendProcess

pytestmark = pytest.mark.krita
W, H = 128, 128
INTERVAL_MS = 150


@pytest.fixture(scope="module")
def facts(tmp_path_factory):
    backend = BackendProcess(output_dir=tmp_path_factory.mktemp("live-output"),
                             extra_args=("--fast-family", "lightning"))
    backend.start()
    try:
        return run_scenario("scenario_live", {"url": backend.url, "width": W, "height": H, "interval_ms": INTERVAL_MS},
                            tmp_path_factory.mktemp("krita-live"))
    finally:
        backend.stop()


def test_the_live_interval_is_offered_with_auto_reblend_and_fast(facts):
    assert facts["live_box_enabled"]
    assert facts["generate"] == ["done", "fast", 4]  # Lightning's distilled steps


def test_a_drag_reblends_live_and_the_newest_lands_as_the_blend(facts):
    live, settled = facts["started"]
    assert live >= 2 and live + settled >= 3  # two live ones during the drag, then the final placement's
    # Each re-blend cancelled the one before it; the first was queued, so the server never ran it.
    assert facts["outcomes"] == ["cancelled"] * (live + settled - 1) + ["done"]
    assert facts["first_cancelled_on_server"] == "cancelled"
    assert facts["inserted_tops"] == 1  # only the newest went in: superseded results are dropped
    assert facts["blend_count"] == 2  # Blend (previous) and Blend
    assert facts["landed_box"] == facts["final_box"]  # the Blend is for where the foreground lies now
    assert facts["landed_params"] == ["fast", 4]
    assert facts["latency"].startswith("Last re-blend ") and facts["latency"].endswith(" s")
    assert facts["message"].startswith("Blend regenerated"), facts["message"]


def test_the_settle_reblend_is_skipped_when_the_last_live_one_was_for_the_final_placement(facts):
    assert facts["no_settle_duplicate"] == [["done"], 0]
    assert facts["no_settle_inserted"] == 1


def test_a_document_closed_mid_drag_cancels_its_reblend_and_inserts_nothing(facts):
    assert facts["closed_outcome"] == [True, "cancelled"]
    assert facts["closed_server_state"] == "cancelled"
    assert facts["closed_message"] == ("The document was closed mid-drag: its re-blend was cancelled, "
                                       "nothing was inserted.")
    count, after = facts["documents_after_close"]
    assert after == count - 1  # the closed one is gone and nothing opened another
