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


def test_a_drag_reblends_live_one_at_a_time_and_the_final_placement_lands_as_the_blend(facts):
    # While the first live re-blend waited behind another job, dragging on started no second one; the
    # second went out only once the first had run and its Blend was in, mid-drag.
    assert facts["started_while_in_flight"] == 1
    assert facts["first_in_when_second_went"] == ["done", 1]
    assert facts["first_landed_box"] is not None and facts["first_landed_box"] != facts["final_box"]
    # Three live ones, then the settle one for the last move, which cancelled the stale third.
    assert facts["started"] == [3, 1]
    assert facts["outcomes"] == ["done", "done", "cancelled", "done"]
    assert facts["stale_cancelled_on_server"] == "cancelled"
    assert facts["inserted_tops"] == 3  # the two live Blends and the final one: a cancelled one goes nowhere
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
