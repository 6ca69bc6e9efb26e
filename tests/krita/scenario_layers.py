"""Runs INSIDE real Krita (kritarunner): generate into layers, move, re-blend, save and reopen.

The test (test_krita_layers.py) starts kritarunner on this module with a JSON config named by
LF_SCENARIO_CONFIG and reads the facts this writes; the assertions live in the test, so a crash here
shows up as missing facts plus the traceback.
"""
import json
import os
import time

from scenario_report import report


def contract_breaks(side) -> list:
    """How the Krita side differs from the Documents protocol the controller is written against:
    members it lacks, and members whose leading parameters are not the protocol's."""
    import inspect

    from layerfusion.targets import Documents

    breaks = [] if isinstance(side, Documents) else ["not a Documents"]
    for name, member in vars(Documents).items():
        if name.startswith("_") or not callable(member):
            continue
        own = getattr(type(side), name, None)
        if own is None:
            breaks.append("no " + name)
            continue
        wanted = list(inspect.signature(member).parameters)
        have = list(inspect.signature(own).parameters)
        if have[:len(wanted)] != wanted:
            breaks.append("%s%s, not %s" % (name, have, wanted))
    return breaks


def spin(condition, limit=900.0):  # a hang guard only: a loaded machine runs jobs slowly
    from PyQt5.QtWidgets import QApplication

    app = QApplication.instance()
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting inside Krita")
        app.processEvents()
        time.sleep(0.005)


def bgra(node, x, y, w, h):
    return bytes(node.pixelData(x, y, w, h))


def alpha_over(fg, bg):
    """Straight-alpha 'over' of two BGRA byte strings (the composite a plain layer stack shows)."""
    out = bytearray(len(bg))
    for i in range(0, len(bg), 4):
        a = fg[i + 3]
        for c in range(3):
            out[i + c] = (fg[i + c] * a + bg[i + c] * (255 - a) + 127) // 255
        out[i + 3] = 255
    return bytes(out)


def mean_abs(a, b, w, rect=None, h=None):
    total = count = 0
    for i in range(0, len(a), 4):
        p = i // 4
        x, y = p % w, p // w
        if rect and not (rect[0] <= x < rect[0] + rect[2] and rect[1] <= y < rect[1] + rect[3]):
            continue
        total += sum(abs(a[i + c] - b[i + c]) for c in range(3))
        count += 3
    return total / max(1, count)


def run(cfg, facts):
    from krita import Krita

    from layerfusion.controller import Controller
    from layerfusion.docker import Panel
    from layerfusion.layers import find_group, member, read_records, write_records
    from layerfusion.reblend import KritaSide, blend_layers
    from layerfusion.settings import Settings

    W, H = cfg["width"], cfg["height"]
    app = Krita.instance()
    doc = app.createDocument(W, H, "lf-test", "RGBA", "U8", "", 300.0)
    side = KritaSide(doc)
    panel = Panel()
    settings = Settings(server_url=cfg["url"], foreground_prompt="a wine glass", background_prompt="a wooden table",
                        steps=2, seed=5, random_seed=False, target_pixels=128 * 128, strength=0.6)
    controller = Controller(panel, side, settings)
    finished = []
    controller.job_finished.connect(finished.append)
    facts["documents_contract"] = contract_breaks(side)

    controller.generate()
    spin(lambda: len(finished) == 1)
    facts["generate_state"] = finished[0].state
    facts["message"] = panel.message.text()
    group = find_group(doc)
    facts["top_level"] = [n.name() for n in doc.rootNode().childNodes()]
    facts["group_name"] = group.name() if group else None
    facts["group_type"] = group.type() if group else None
    facts["children"] = [n.name() for n in group.childNodes()]
    facts["bounds"] = {n.name(): [n.bounds().x(), n.bounds().y(), n.bounds().width(), n.bounds().height()]
                       for n in group.childNodes()}
    fg, bg = member(doc, group, "foreground"), member(doc, group, "background")
    blend = blend_layers(doc, group)[-1]
    fg0, bg0, blend0 = bgra(fg, 0, 0, W, H), bgra(bg, 0, 0, W, H), bgra(blend, 0, 0, W, H)
    alphas = fg0[3::4]
    facts["fg_alpha_levels"] = len(set(alphas))
    facts["fg_partial_alpha"] = sum(1 for a in alphas if 0 < a < 255)
    facts["bg_alpha_min"] = min(bg0[3::4])
    facts["blend_vs_alpha_composite"] = mean_abs(blend0, alpha_over(fg0, bg0), W)
    record = read_records(doc)[group.uniqueId().toString()]
    facts["record_seed"] = record["params"].get("seed")
    facts["record_rect"] = record["rect"]
    facts["record_generation_size"] = record["generation_size"]

    dx, dy = cfg["dx"], cfg["dy"]
    pos = fg.position()
    fg.move(pos.x() + dx, pos.y() + dy)
    doc.waitForDone()
    b = fg.bounds()
    facts["fg_bounds_moved"] = [b.x(), b.y(), b.width(), b.height()]
    moved_fg = bgra(fg, 0, 0, W, H)
    facts["fg_read_shift_ok"] = moved_fg[(dy * W + dx) * 4 : (dy * W + dx) * 4 + 4 * 8] == fg0[0 : 4 * 8]

    controller.reblend()
    spin(lambda: len(finished) == 2)
    facts["reblend_state"] = finished[1].state
    facts["reblend_message"] = panel.message.text()
    blends = blend_layers(doc, group)
    facts["blend_count"] = len(blends)
    facts["children_after_reblend"] = [n.name() for n in group.childNodes()]
    blend1 = bgra(blends[-1], 0, 0, W, H)
    facts["blend_change_moved_region"] = mean_abs(blend1, blend0, W, [dx, dy, W - dx, H - dy])
    facts["old_blend_kept_below"] = bgra(blends[0], 0, 0, W, H) == blend0
    facts["reblend_params_recorded"] = "reblend_params" in read_records(doc)[group.uniqueId().toString()]

    # A second re-blend keeps at most two blend layers (the covered previous one and the new one).
    controller.reblend()
    spin(lambda: len(finished) == 3)
    facts["blend_count_after_second"] = len(blend_layers(doc, group))

    # Auto re-blend: a move starts a re-blend once the foreground settles; moving again while it
    # runs cancels that stale job and starts a fresh one after the next pause.
    from layerfusion.auto_reblend import AutoReblend

    auto = AutoReblend(controller, side)
    auto.set_enabled(True)
    spin(lambda: auto.seen(group.uniqueId().toString()) is not None)  # it has seen where the foreground lies
    before_auto = len(finished)
    top_before = bgra(blend_layers(doc, group)[-1], 0, 0, W, H)
    # The stale re-blend must still be running when the watcher sees the second move (up to a poll
    # later): a re-blend takes its steps from the group's record, so that one gets the most there are.
    records = read_records(doc)
    saved_records = json.loads(json.dumps(records))
    records[group.uniqueId().toString()]["params"]["steps"] = 200
    write_records(doc, records)
    pos = fg.position()
    fg.move(pos.x() - 8, pos.y())
    spin(lambda: bool(controller.reblend_runs))  # the settle delay passed: a re-blend is running
    write_records(doc, saved_records)  # the fresh re-blend after the next move is a short one again
    pos = fg.position()
    fg.move(pos.x() - 8, pos.y())
    spin(lambda: len(finished) >= before_auto + 2)
    auto.set_enabled(False)
    facts["auto_outcomes"] = [o.state for o in finished[before_auto:]]
    facts["auto_blend_changed"] = bgra(blend_layers(doc, group)[-1], 0, 0, W, H) != top_before
    facts["auto_blend_count"] = len(blend_layers(doc, group))

    # A local re-blend: with a small object, a move re-blends only around it, and every pixel of the
    # Blend outside the server's crop stays as it was.
    from layerfusion.local_blend import scaled
    from layerfusion.qt import QByteArray

    square = bytearray(W * H * 4)
    for row in range(40, 64):
        square[(row * W + 40) * 4:(row * W + 64) * 4] = bytes([30, 60, 200, 255]) * 24
    fg.move(0, 0)
    fg.setPixelData(QByteArray(bytes(square)), 0, 0, W, H)
    doc.waitForDone()
    controller.reblend()  # its Blend is made for the square where it now is
    spin(lambda: len(finished) == before_auto + 3)
    blend_a = bgra(blend_layers(doc, group)[-1], 0, 0, W, H)
    fg.move(16, 0)
    doc.waitForDone()
    controller.reblend()
    spin(lambda: len(finished) == before_auto + 4)
    local = finished[-1]
    facts["local_state"] = local.state
    facts["local_changed"] = local.params.get("changed")
    region = local.params.get("local_region")
    facts["local_region"] = region
    if region:
        gen_w, gen_h = record["generation_size"]
        x0, y0, w, h = scaled(tuple(region), W / gen_w, H / gen_h, W, H)
        blend_b = bgra(blend_layers(doc, group)[-1], 0, 0, W, H)
        outside = [i for i in range(W * H) if not (x0 <= i % W < x0 + w and y0 <= i // W < y0 + h)]
        facts["local_outside_pixels"] = len(outside)
        facts["local_outside_same"] = all(blend_a[i * 4:i * 4 + 4] == blend_b[i * 4:i * 4 + 4] for i in outside)
        facts["local_inside_change"] = mean_abs(blend_b, blend_a, W, [x0, y0, w, h])

    # Reads: the Foreground over its own bounds only; a later read of the same drag takes the Background
    # and the Blend over (with their PNGs) while they are the same layers at the same bounds.
    from layerfusion.local_blend import alpha_box, expand
    from layerfusion.reblend import read_source

    first = read_source(doc, group)
    full_fg = bgra(fg, 0, 0, W, H)
    facts["read_fg_at"] = list(first.foreground_at)
    facts["read_fg_bytes"] = [len(first.foreground), len(full_fg)]
    facts["read_fg_expanded_same"] = expand(first.foreground, first.foreground_at, W, H) == full_fg
    facts["read_fg_box"] = [list(first.foreground_box), list(alpha_box(full_fg, W, H))]
    facts["read_bg_blend_same"] = [first.background == bgra(bg, 0, 0, W, H),
                                   first.previous_blend == bgra(blend_layers(doc, group)[-1], 0, 0, W, H)]
    first.pngs.update(background="background-png", previous_blend="blend-png")
    again = read_source(doc, group, reuse=first)
    facts["reuse_unchanged"] = [again.background is first.background, again.previous_blend is first.previous_blend,
                                again.pngs]
    pos = bg.position()
    bg.move(pos.x() + 1, pos.y())
    doc.waitForDone()
    shifted = read_source(doc, group, reuse=first)
    facts["reuse_background_moved"] = [shifted.background is first.background,
                                       shifted.background == bgra(bg, 0, 0, W, H),
                                       shifted.previous_blend is first.previous_blend, sorted(shifted.pngs)]
    bg.move(pos.x(), pos.y())
    doc.waitForDone()

    # The prefetch a drag starts with: Background and Blend a strip per step (10 rows here), taken over
    # by the drag's first live read; a layer moved while it reads is left out.
    import layerfusion.reblend as reblend_module

    def prefetched(between=None):
        steps, count = side.prefetch_steps(doc, group), 0
        while True:
            try:
                next(steps)
            except StopIteration as end:
                return end.value, count
            count += 1
            if count == 1 and between is not None:
                between()

    reblend_module.STRIP_BYTES = W * 4 * 10
    kept, count = prefetched()
    taken = read_source(doc, group, reuse=kept)
    facts["prefetch"] = [count, kept.background == bgra(bg, 0, 0, W, H),
                         kept.previous_blend == bgra(blend_layers(doc, group)[-1], 0, 0, W, H),
                         taken.background is kept.background, taken.previous_blend is kept.previous_blend]

    def shift_background():
        bg.move(pos.x() + 1, pos.y())
        doc.waitForDone()

    kept, _ = prefetched(shift_background)
    facts["prefetch_moved_background"] = sorted(kept.layer_keys)
    bg.move(pos.x(), pos.y())
    doc.waitForDone()

    # A Foreground is written over its visible pixels only (Krita keeps no transparent tiles to scan).
    from layerfusion.layers import bounds_box, write_visible

    object_only = bytearray(W * H * 4)
    for row in range(20, 29):
        object_only[(row * W + 30) * 4:(row * W + 42) * 4] = bytes([9, 99, 199, 128]) * 12
    written = doc.createNode("written", "paintlayer")
    write_visible(written, bytes(object_only), (0, 0, W, H))
    nothing = doc.createNode("nothing", "paintlayer")
    write_visible(nothing, bytes(W * H * 4), (0, 0, W, H))
    facts["write_visible"] = [list(bounds_box(written)), bytes(written.pixelData(0, 0, W, H)) == bytes(object_only),
                              bounds_box(nothing)[2:]]

    # What Ctrl+Z of that re-blend restores (blend_a on top again; the record is not undone): the
    # "before" box must be blend_a's own, (40, 40) 24 x 24, so the change spans it and where the square is.
    blend_layers(doc, group)[-1].remove()
    doc.waitForDone()
    undone = read_source(doc, group)
    other_blend = read_source(doc, group, reuse=first)  # another Blend on top: read, not taken over
    facts["reuse_other_blend"] = [other_blend.previous_blend is first.previous_blend,
                                  other_blend.previous_blend == blend_a, sorted(other_blend.pngs)]
    facts["undone_changed"] = list(undone.changed) if undone.changed is not None else None
    facts["undone_previous_is_blend_a"] = undone.previous_blend == blend_a
    controller.reblend(undone)  # two blend layers again, as the save below expects
    spin(lambda: len(finished) == before_auto + 5)
    facts["undone_reblend_local"] = "local_region" in finished[-1].params
    # The Blend it put in is the source's previous one now: a drag's next read takes it over, and those
    # are the very pixels Krita holds.
    after = read_source(doc, group, reuse=undone)
    facts["reuse_put_in_blend"] = [after.previous_blend is undone.previous_blend,
                                   after.previous_blend == bgra(blend_layers(doc, group)[-1], 0, 0, W, H)]

    # With a selection, the selection's bounds are the target (mapped to a model size, scaled back).
    from krita import Selection

    selection = Selection()
    selection.select(16, 8, 96, 64, 255)
    doc.setSelection(selection)
    t = side.generation_target(128 * 128)
    facts["selection_target"] = [t.x, t.y, t.width, t.height, t.gen_width, t.gen_height]
    doc.setSelection(Selection())  # an empty selection: back to the whole canvas

    # Never half-inserted: an insert that fails leaves the document as it was.
    before = [n.name() for n in doc.rootNode().childNodes()]
    target = side.generation_target(128 * 128)
    try:
        side.insert(target, {"background": bg0}, {"seed": 1}, "broken")
        facts["broken_insert"] = "no error"
    except Exception as err:
        facts["broken_insert"] = str(err)
    facts["after_broken_insert_unchanged"] = [n.name() for n in doc.rootNode().childNodes()] == before
    facts["records_after_broken"] = len(read_records(doc))

    b = fg.bounds()
    facts["fg_bounds_saved"] = [b.x(), b.y(), b.width(), b.height()]
    saved_fg = bgra(fg, 0, 0, W, H)
    path = os.path.join(cfg["workdir"], "scene.kra")
    doc.setBatchmode(True)
    facts["saved"] = bool(doc.saveAs(path))
    doc.close()

    # A document closed while its job runs gets nothing and nothing breaks.
    doc2 = app.createDocument(W, H, "closing", "RGBA", "U8", "", 300.0)
    side.document = doc2
    count = len(finished)
    controller.generate()
    doc2.close()
    spin(lambda: len(finished) == count + 1)
    facts["closed_doc_message"] = panel.message.text()

    reopened = app.openDocument(path)
    facts["reopened"] = reopened is not None
    group2 = find_group(reopened)
    facts["reopened_children"] = [n.name() for n in group2.childNodes()] if group2 else None
    records = read_records(reopened)
    facts["reopened_record_seed"] = records[group2.uniqueId().toString()]["params"].get("seed") if group2 else None
    fg2 = member(reopened, group2, "foreground")
    b2 = fg2.bounds()
    facts["reopened_fg_bounds"] = [b2.x(), b2.y(), b2.width(), b2.height()]
    facts["reopened_fg_same_pixels"] = bgra(fg2, 0, 0, W, H) == saved_fg
    reopened.close()
    controller.shutdown()
    panel.deleteLater()
    spin(lambda: True)


def __main__(args):
    report(run)
